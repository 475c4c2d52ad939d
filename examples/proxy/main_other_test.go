//go:build !unix

package main

// childMain runs main in the child process of runMain.
func childMain() { main() }
