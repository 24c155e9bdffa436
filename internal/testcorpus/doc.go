// Package testcorpus holds the hostile policies that more than one test
// suite feeds to uplinkd: the policy package's own parser tests and the
// reliability suite, which runs the real daemon on each. Generated rather
// than stored, because the interesting ones are huge (over the size limit,
// thousands of gateways, deep nesting) and a megabyte of padding in git
// says nothing a loop doesn't.
package testcorpus
