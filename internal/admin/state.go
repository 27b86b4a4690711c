package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// stateVersion is the format version written to state files.
const stateVersion = 1

// State is the persisted operator intent: the admin state of every server
// that is not ready. The zero value is an empty state (every server ready).
type State struct {
	// Version is the file format version; 1.
	Version int `json:"version"`
	// Updated is when the state was last written.
	Updated time.Time `json:"updated"`
	// Servers maps a server name to "drain" or "maint". Ready servers are
	// not listed. Names unknown to the running pool are kept, so a server
	// that is temporarily missing from the configuration or from discovery
	// keeps its state when it returns.
	Servers map[string]string `json:"servers"`
	// Stamps holds, per server, the version of its last admin change
	// (ready ones too), so the pair (internal/peer) can tell which of two
	// instances' states is the newer. Absent in files written before the
	// pair existed: their states count as version 0.
	Stamps map[string]Stamp `json:"stamps,omitempty"`
}

// ParseState decodes a state file. It rejects unknown versions and admin
// states, so a damaged file is reported instead of silently making every
// server ready.
func ParseState(b []byte) (State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("admin: parse state: %w", err)
	}
	if st.Version != stateVersion {
		return State{}, fmt.Errorf("admin: parse state: unsupported version %d", st.Version)
	}
	for name, a := range st.Servers {
		if name == "" {
			return State{}, errors.New("admin: parse state: empty server name")
		}
		if _, ok := backend.ParseAdminState(a); !ok {
			return State{}, fmt.Errorf("admin: parse state: server %q: unknown admin state %q", name, a)
		}
	}
	for name, sp := range st.Stamps {
		if _, ok := backend.ParseAdminState(sp.Admin); !ok || name == "" {
			return State{}, fmt.Errorf("admin: parse state: stamp of server %q: unknown admin state %q", name, sp.Admin)
		}
	}
	if st.Servers == nil {
		st.Servers = map[string]string{}
	}
	return st, nil
}

// Names returns the server names in the state, sorted.
func (st State) Names() []string {
	out := make([]string, 0, len(st.Servers))
	for n := range st.Servers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// StateFile reads and writes a State at a path. Writes are atomic: a
// temporary file in the same directory is written, synced and renamed
// over the old one, so a crash leaves either the old or the new state.
// The zero value is not usable; create it with NewStateFile. It is not
// safe for concurrent Save calls; the Server serialises them.
type StateFile struct {
	path string
}

// NewStateFile returns the state file at path.
func NewStateFile(path string) *StateFile { return &StateFile{path: path} }

// Path returns the file's path.
func (f *StateFile) Path() string { return f.path }

// Load reads the state. A missing file is an empty state, not an error.
func (f *StateFile) Load() (State, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Version: stateVersion, Servers: map[string]string{}}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("admin: read state file: %w", err)
	}
	st, err := ParseState(b)
	if err != nil {
		return State{}, fmt.Errorf("%s: %w", f.path, err)
	}
	return st, nil
}

// Save writes st atomically, creating the directory (mode 0750) if needed.
func (f *StateFile) Save(st State) error {
	st.Version = stateVersion
	if st.Servers == nil {
		st.Servers = map[string]string{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("admin: encode state: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("admin: state directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("admin: write state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("admin: write state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("admin: sync state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("admin: write state file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return fmt.Errorf("admin: state file mode: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("admin: replace state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}
