package bfd

import (
	"bytes"
	"fmt"
	"os"
)

// MaxSecret is the longest SHA1 secret (RFC 5880 §4.4: up to 20 bytes).
const MaxSecret = 20

// LoadKey reads a secret from path for a key of type typ and id. The file
// must not be readable by others: the policy that names it is
// world-readable, the secret must not be. One trailing newline is dropped,
// so `echo secret > file` works.
func LoadKey(path string, typ AuthType, id uint8) (*Key, error) {
	if typ != AuthKeyedSHA1 && typ != AuthMeticulousSHA {
		return nil, fmt.Errorf("loading bfd key %s: auth type %s is not supported", path, typ)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading bfd key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("loading bfd key: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o004 != 0 {
		return nil, fmt.Errorf("loading bfd key %s: readable by others (mode %04o); chmod o-r it", path, m)
	}
	b := make([]byte, MaxSecret+2)
	n, _ := f.Read(b)
	b = bytes.TrimSuffix(b[:n], []byte("\n"))
	if len(b) == 0 || len(b) > MaxSecret {
		return nil, fmt.Errorf("loading bfd key %s: the secret must be 1..%d bytes", path, MaxSecret)
	}
	return &Key{Type: typ, ID: id, Secret: b}, nil
}
