// Package condwatch gathers the facts conditions need from outside uplinkd's
// health: link state and addresses from netlink, and track files written
// by other tools (keepalived's notify scripts, another uplinkd) from
// inotify.
//
// Notifications are hints. A link or address notification makes the watcher
// re-read every watched interface, and a write to a track file's directory
// re-reads that file; the result is published only when it differs from
// the last one. A timer (the policy's resync_interval) and every
// resubscription (after ENOBUFS, or when netlink closes the subscription)
// re-read everything, so a lost notification costs at most one interval.
//
// Track files are watched through their directory, not their own inode:
// keepalived, uplinkd and most scripts replace a file by rename, which a
// watch on the file would lose. Only IN_CLOSE_WRITE, renames and deletes
// count, never IN_MODIFY, so a file read while half-written (an empty file
// right after "echo 0 > f" truncated it) never makes a condition flap.
package condwatch
