// Package lint holds the project's conventions as tests: the import rules of
// the layered architecture (see ARCHITECTURE.md) and the purity of protocol
// cores. It has no non-test code.
package lint
