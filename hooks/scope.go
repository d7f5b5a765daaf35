package hooks

// bands is the one table of default priority bands, by scope. The hook
// protocol fills a request's priority from it when the client names none,
// and the prefetch engine orders its queue by it; both read it through
// Scope.Priority so the two can never disagree. A read blocked in the
// FUSE layer outranks every band; that ordering is the engine's, not the
// protocol's.
var bands = map[Scope]int{
	ScopeFrame:     100,
	ScopeMiss:      90,
	ScopeJob:       60,
	ScopeLookahead: 20,
	ScopeSequence:  10,
}

// Priority is the scope's band, which a request gets when it names no
// priority; 0 for a scope that is not one of the prefetch scopes.
func (s Scope) Priority() int { return bands[s] }

// Valid reports whether s is one of the prefetch scopes.
func (s Scope) Valid() bool { return s.Priority() > 0 }
