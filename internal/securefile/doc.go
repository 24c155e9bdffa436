// Package securefile opens the files that decide what uplinkd runs as root
// (the policy and hook executables) so that what is checked is what is
// read or executed.
//
// Open walks the path one component at a time with openat(2) and
// O_NOFOLLOW, from "/" down, never letting the kernel resolve a symlink on
// its own: a symlink is read with readlinkat and its target walked the same
// way, so the directory holding each link is checked like every other
// directory on the way. The last component is opened once, checked with
// fstat on that descriptor (a regular file, and in Trusted mode owned by
// root and not writable by group or others), and the descriptor is what
// callers read from or execute through (/proc/self/fd/N). Nothing can be
// swapped between the check and the use, and a FIFO, a device or a
// directory is refused before anything is read, so `check /dev/zero` or a
// FIFO with no writer cannot exhaust memory or hang.
package securefile
