package raft

import "github.com/synod-io/synod/consensus"

// FirstIndex is the first index Entry can return: entries before it were
// compacted behind a snapshot.
func (r *Raft) FirstIndex() uint64 { return r.log.offset + 1 }

// RoleTerm reports the replica's role and term, like Status but without
// building the leader's progress map (hosts and checkers call it often).
func (r *Raft) RoleTerm() (consensus.Role, uint64) { return r.role, r.term }
