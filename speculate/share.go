package speculate

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Co-open groups shared between nodes (the node daemon publishes a
// source's to other nodes: internal/learnshare). The groups travel as the
// JSON the co-open file holds (a list of groups, most recently led first),
// so that format's version is part of the shared format's.

// ExportCoOpen returns at most max of the groups co-open learning holds,
// most recently led first, as JSON, and how many; nil with co-open off
// or nothing learned.
func (s *Speculator) ExportCoOpen(max int) (json.RawMessage, int, error) {
	if s == nil || s.co == nil || max <= 0 {
		return nil, 0, nil
	}
	m := s.co.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	gs := make([]*group, 0, min(max, len(m.groups)))
	for e := m.lru.Front(); e != nil && len(gs) < max; e = e.Next() {
		gs = append(gs, e.Value.(*group))
	}
	if len(gs) == 0 {
		return nil, 0, nil
	}
	b, err := json.Marshal(gs)
	if err != nil {
		return nil, 0, fmt.Errorf("speculate: export co-open groups: %w", err)
	}
	return b, len(gs), nil
}

// ErrBadCoOpen marks shared co-open groups that do not check out.
var ErrBadCoOpen = errors.New("speculate: malformed co-open groups")

// ImportCoOpen adds groups learned elsewhere (ExportCoOpen's JSON) whose
// leaders co-open learning does not know yet, behind every group it
// learned itself and only while there is room: what this node saw comes
// first. Their sequence followers are dropped: such a follower predicts
// the frame after the last one its learner saw, which another node's
// renders are not at. It returns how many it added, and an error
// (wrapping ErrBadCoOpen) when raw is not groups or holds an invalid one;
// then nothing is added.
func (s *Speculator) ImportCoOpen(raw json.RawMessage) (int, error) {
	if s == nil || s.co == nil || len(raw) == 0 {
		return 0, nil
	}
	var gs []*group
	if err := json.Unmarshal(raw, &gs); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadCoOpen, err)
	}
	if len(gs) > coMaxLeaders {
		return 0, fmt.Errorf("%w: %d groups, at most %d", ErrBadCoOpen, len(gs), coMaxLeaders)
	}
	for i, g := range gs {
		if g == nil || !validGroup(g) {
			return 0, fmt.Errorf("%w: group %d is invalid", ErrBadCoOpen, i)
		}
	}
	m := s.co.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	added := 0
	for _, g := range gs {
		kept := g.Followers[:0]
		for _, f := range g.Followers {
			if !f.Seq {
				kept = append(kept, f)
			}
		}
		g.Followers = kept
		if len(kept) == 0 || m.groups[g.Key] != nil || len(m.groups) >= coMaxLeaders {
			continue
		}
		g.elem = m.lru.PushBack(g)
		m.groups[g.Key] = g
		added++
	}
	if added > 0 {
		m.dirty = true
	}
	return added, nil
}
