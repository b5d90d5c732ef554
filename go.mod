module github.com/dragon-mp/dragon_mp

go 1.26.8

require (
	github.com/go-python/gopy v0.4.10 // indirect
	github.com/quic-go/quic-go v0.65.0
	golang.org/x/sys v0.50.0
)

require github.com/cilium/ebpf v0.22.0

require (
	github.com/gonuts/commander v0.1.0 // indirect
	github.com/gonuts/flag v0.1.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/telemetry v0.0.0-20261009151841-97e8ea77aa2a // indirect
	golang.org/x/tools v0.52.0 // indirect
)

tool (
	github.com/go-python/gopy
	golang.org/x/tools/cmd/goimports
)
