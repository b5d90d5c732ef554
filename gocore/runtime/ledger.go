package runtime

import (
	"os"

	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/proc"
)

// Ledgers returns the run's ledger directory (gocore/ledger: the pool
// blocks each process holds outside any channel), made on first use.
func (r *Runtime) Ledgers() (*ledger.Directory, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ledgers == nil {
		d, err := ledger.Open(r.Pool, &r.Pool.UserWords()[wordLedgers])
		if err != nil {
			return nil, err
		}
		r.ledgers = d
	}
	return r.ledgers, nil
}

// RegisterLedger gives this process its ledger in the run's directory
// (named by pid and start time, so that the head can tell when it has
// died). Called once per process and run: by the Python binding as it joins
// the run, by the C API at dmp_attach.
func (r *Runtime) RegisterLedger() (*ledger.Ledger, error) {
	d, err := r.Ledgers()
	if err != nil {
		return nil, err
	}
	start, err := proc.StartTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	return d.Register(os.Getpid(), start)
}
