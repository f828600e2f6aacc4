// Command hello is a Go program that is not larder, for the tests of the
// checks on the binaries put in the image.
package main

func main() { println("hello") }
