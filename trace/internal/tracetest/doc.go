// Package tracetest holds helpers shared by the tests of package trace
// and of the packages that produce traces (trace/strace).
//
// It does not import package trace, so that trace's own in-package tests
// can use it without an import cycle; its helpers take the header and
// events as opaque values to encode.
package tracetest
