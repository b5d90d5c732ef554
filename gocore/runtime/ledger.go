package runtime

import "github.com/dragon-mp/dragon_mp/gocore/ledger"

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
