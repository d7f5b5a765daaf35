package hooks

// Priority is the scope's band, which a request gets when it names no
// priority. A read blocked in the FUSE layer outranks every band; that
// ordering is the engine's, not the protocol's.
func (s Scope) Priority() int {
	switch s {
	case ScopeFrame:
		return 100
	case ScopeMiss:
		return 90
	case ScopeJob:
		return 60
	case ScopeLookahead:
		return 20
	case ScopeSequence:
		return 10
	}
	return 0
}

// Valid reports whether s is one of the prefetch scopes.
func (s Scope) Valid() bool { return s.Priority() > 0 }
