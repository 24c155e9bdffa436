// Package testca makes a throwaway certificate authority and server
// certificates signed by it, for tests of TLS: the daemon's HTTPS listener
// (exporter-toolkit's web config) and the detector's HTTPS probes. Keys
// are ECDSA P-256, valid for an hour around now, and never leave the
// test's temporary directory.
package testca
