// Package nlsub keeps a netlink subscription alive: subscribe, serve,
// and after a failure (ENOBUFS: notifications were lost; the kernel or
// netlink closing the socket) close, drain and subscribe again. Every
// watcher that subscribes shares this one lifecycle, so a resubscription
// behaves the same wherever it happens; what a watcher does with its
// updates, and its full re-read after each resubscription, is its own.
package nlsub
