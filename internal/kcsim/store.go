package kcsim

import (
	"sync"
	"time"
)

// sessionTTL is how long auth sessions and codes live (Keycloak's default
// login timeout is 30 minutes; codes live one minute, we are lenient).
const sessionTTL = 30 * time.Minute

// maxEntries bounds the store; beyond it, expired entries are pruned and, if
// still full, the oldest half is dropped so benchmarks cannot grow memory forever.
const maxEntries = 200_000

// authSession is the state of one login in progress.
type authSession struct {
	id          string
	clientID    string
	redirectURI string
	state       string
	nonce       string
	tabID       string
	route       string // the route its AUTH_SESSION_ID carries
	created     time.Time
}

// codeEntry is one issued authorization code.
type codeEntry struct {
	sessionID   string
	clientID    string
	redirectURI string
	used        bool
	created     time.Time
}

// store holds the auth sessions and codes this node created.
type store struct {
	mu       sync.Mutex // guards sessions and codes
	sessions map[string]*authSession
	codes    map[string]*codeEntry
}

func (s *store) init() {
	s.sessions = make(map[string]*authSession)
	s.codes = make(map[string]*codeEntry)
}

// putSession records as.
func (s *store) putSession(as *authSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= maxEntries {
		pruneLocked(s.sessions, func(a *authSession) time.Time { return a.created })
	}
	s.sessions[as.id] = as
}

// session returns the live auth session id, or nil.
func (s *store) session(id string) *authSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	as := s.sessions[id]
	if as == nil || time.Since(as.created) > sessionTTL {
		return nil
	}
	return as
}

// putCode records an issued code.
func (s *store) putCode(code string, c *codeEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.codes) >= maxEntries {
		pruneLocked(s.codes, func(c *codeEntry) time.Time { return c.created })
	}
	s.codes[code] = c
}

// redeem marks code used. found reports whether this node issued it; ok
// whether it was still valid (unused, unexpired); entry is a copy of the record.
func (s *store) redeem(code string) (entry codeEntry, found, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.codes[code]
	if c == nil {
		return codeEntry{}, false, false
	}
	if c.used || time.Since(c.created) > sessionTTL {
		return *c, true, false
	}
	c.used = true
	return *c, true, true
}

// count returns the number of live auth sessions (for metrics).
func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// pruneLocked drops expired entries of m, then the older half if still full.
func pruneLocked[V any](m map[string]V, created func(V) time.Time) {
	now := time.Now()
	for k, v := range m {
		if now.Sub(created(v)) > sessionTTL {
			delete(m, k)
		}
	}
	if len(m) < maxEntries {
		return
	}
	cut := now.Add(-sessionTTL / 2)
	for k, v := range m {
		if created(v).Before(cut) || len(m) >= maxEntries {
			delete(m, k)
		}
		if len(m) < maxEntries/2 {
			return
		}
	}
}
