// Package l2counttest holds in-memory fakes of l2count's kernel side (its
// Table and Neighbours), keyed as the kernel keys them, with error
// injection, so that l2count.Source runs its production code in tests.
package l2counttest
