package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/synod-io/synod/consensus"
)

// ErrIdentityMismatch is matched by the error Start returns for a data
// directory that belongs to another cluster or member.
var ErrIdentityMismatch = errors.New("node: data directory belongs to another cluster or member")

// identityVersion is the identity file's format version.
const identityVersion = 1

// identity is what the "cluster" file in a data directory records: whose
// state the directory holds. It is written once, on first start.
type identity struct {
	Version   int              `json:"version"`
	ClusterID uint64           `json:"cluster_id"`
	MemberID  consensus.NodeID `json:"member_id"`
	Name      string           `json:"name"`
	Protocol  string           `json:"protocol"`
}

// checkIdentity writes the identity file in a new data directory, or checks
// that an existing one records this cluster, member and protocol. A
// directory that holds state but no identity file is refused: its origin
// is unknown.
func checkIdentity(cfg *Config) (fresh bool, err error) {
	want := identity{Version: identityVersion, ClusterID: cfg.ClusterID, MemberID: cfg.ID, Name: cfg.Name, Protocol: cfg.Protocol}
	p := cfg.path(identityName)
	data, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for _, d := range []string{walDirName, snapDirName, kvDirName} {
			if _, err := os.Stat(cfg.path(d)); err == nil {
				return false, fmt.Errorf("%w: %s holds %s/ but no identity file %q, so whose state it is cannot be checked; "+
					"point --data-dir at this member's own directory, or remove the directory to join afresh",
					ErrIdentityMismatch, cfg.DataDir, d, identityName)
			}
		}
		return true, writeIdentity(cfg.DataDir, p, &want)
	case err != nil:
		return false, fmt.Errorf("node: reading %s: %w", p, err)
	}
	var got identity
	if err := json.Unmarshal(data, &got); err != nil {
		return false, fmt.Errorf("node: identity file %s is damaged (%v); if this is the member's data directory, restore the file or remove the directory and rejoin", p, err)
	}
	if got.Version != identityVersion {
		return false, fmt.Errorf("node: identity file %s has format version %d; this build reads %d", p, got.Version, identityVersion)
	}
	if got.ClusterID != want.ClusterID || got.MemberID != want.MemberID {
		return false, fmt.Errorf("%w: %s holds the state of member %d (%q) of cluster %x, but this is member %d (%q) of cluster %x; "+
			"check --name, --initial-cluster-token and --data-dir, or use an empty data directory",
			ErrIdentityMismatch, cfg.DataDir, got.MemberID, got.Name, got.ClusterID, want.MemberID, want.Name, want.ClusterID)
	}
	if got.Protocol != want.Protocol {
		return false, fmt.Errorf("%w: %s holds the state of a %s member, but this member was started with protocol %s; "+
			"a data directory cannot change protocol: start it with protocol %s, or use an empty data directory",
			ErrIdentityMismatch, cfg.DataDir, got.Protocol, want.Protocol, got.Protocol)
	}
	if got.Name != want.Name {
		return false, fmt.Errorf("%w: %s belongs to the member named %q, but this member is named %q", ErrIdentityMismatch, cfg.DataDir, got.Name, want.Name)
	}
	return false, nil
}

// writeIdentity writes the identity file durably: to a temporary file,
// synced, renamed into place, and the directory synced.
func writeIdentity(dir, p string, id *identity) error {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := writeFileDurably(dir, p, data); err != nil {
		return fmt.Errorf("node: writing identity file %s: %w", p, err)
	}
	return nil
}

// writeFileDurably replaces the file p in directory dir with data, so that
// a crash leaves either the old file or the new one: it writes a
// temporary file, syncs it, renames it into place and syncs dir.
func writeFileDurably(dir, p string, data []byte) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
