//go:build linux

package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusesBadBinaries: a binary that would not run from the image, or
// is not larder, stops the build with a message that says what is wrong
// and how to build the right one, and nothing is written.
func TestRefusesBadBinaries(t *testing.T) {
	text := filepath.Join(t.TempDir(), "larder.sh")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho larder\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		binary  func(t *testing.T) []string // --binary values
		wantErr []string
	}{
		{"missing", func(t *testing.T) []string {
			return []string{"linux/amd64=" + filepath.Join(t.TempDir(), "absent")}
		}, []string{"binary for linux/amd64", "no such file or directory"}},
		{"not an ELF file", func(t *testing.T) []string {
			return []string{"linux/amd64=" + text}
		}, []string{"larder.sh for linux/amd64 is not an ELF executable"}},
		{"another architecture", func(t *testing.T) []string {
			return []string{"linux/amd64=" + larderFor(t, "linux/arm64")}
		}, []string{"is an ELF executable for arm64, 64-bit, not for linux/amd64 (x86-64, 64-bit)", "GOARCH=amd64"}},
		{"32-bit for a 64-bit platform", func(t *testing.T) []string {
			return []string{"linux/arm64=" + larderFor(t, "linux/arm/v7")}
		}, []string{"is an ELF executable for arm, 32-bit, not for linux/arm64 (arm64, 64-bit)"}},
		{"one good, one wrong", func(t *testing.T) []string {
			return []string{"linux/amd64=" + larderFor(t, "linux/amd64"), "linux/arm/v7=" + larderFor(t, "linux/arm64")}
		}, []string{"not for linux/arm/v7 (arm, 32-bit)", "GOARCH=arm GOARM=7"}},
		{"linked dynamically", func(t *testing.T) []string {
			return []string{"linux/amd64=" + hello(t, "hello-pie", []string{"GOARCH=amd64"}, "-buildmode=pie")}
		}, []string{"is linked dynamically (it needs /lib", "CGO_ENABLED=0"}},
		{"another ARM version", func(t *testing.T) []string {
			return []string{"linux/arm/v7=" + hello(t, "hello-armv6", []string{"GOARCH=arm", "GOARM=6"})}
		}, []string{"was built with GOARM=6, not for linux/arm/v7", "GOARM=7"}},
		{"not larder", func(t *testing.T) []string {
			return []string{"linux/amd64=" + hello(t, "hello-amd64", []string{"GOARCH=amd64"})}
		}, []string{"is github.com/larder-cache/larder/release/image/testdata/hello, not larder"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "oci")
			args := append(baseArgs(), "--out", out, "--tar", out+".tar")
			for _, b := range tc.binary(t) {
				args = append(args, "--binary", b)
			}
			err := run(args, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("build succeeded")
			}
			if errUsage(err) {
				t.Errorf("refused as a usage error: %v", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			for _, p := range []string{out, out + ".tar"} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s was written (stat: %v)", p, err)
				}
			}
		})
	}
}

// TestRefusesBadCommandLines: what cannot be run is a usage error that
// names the flag at fault.
func TestRefusesBadCommandLines(t *testing.T) {
	bin := "linux/amd64=/nonexistent/larder" // never reached: the line is refused first
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no version", []string{"--revision", "r", "--created", "1", "--binary", bin}, "--version is required"},
		{"version no tag can be", []string{"--version", "1.2.3+build", "--binary", bin}, `--version "1.2.3+build" cannot be an image tag`},
		{"version starting with a dot", []string{"--version", ".1", "--binary", bin}, `--version ".1" cannot be an image tag`},
		{"no binary", []string{"--version", "1"}, "no --binary given"},
		{"unknown platform", []string{"--version", "1", "--binary", "linux/mips=x"}, `unknown platform "linux/mips"; known: linux/amd64, linux/arm64, linux/arm/v7, linux/arm/v6, linux/386`},
		{"platform twice", []string{"--version", "1", "--binary", bin, "--binary", bin}, "platform linux/amd64 given twice"},
		{"no path", []string{"--version", "1", "--binary", "linux/amd64"}, `want PLATFORM=PATH, got "linux/amd64"`},
		{"created not a number", []string{"--version", "1", "--created", "yesterday", "--binary", bin}, `--created "yesterday" is not a time in Unix seconds`},
		{"an argument", []string{"--version", "1", "--binary", bin, "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--version", "1", "--platform", "linux/amd64"}, "flag provided but not defined: -platform"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args, io.Discard, io.Discard)
			if err == nil || !errUsage(err) {
				t.Fatalf("got %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not say %q", err, tc.wantErr)
			}
		})
	}

	t.Run("SOURCE_DATE_EPOCH not a number", func(t *testing.T) {
		t.Setenv("SOURCE_DATE_EPOCH", "-5")
		err := run([]string{"--version", "1", "--revision", "r", "--binary", bin}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `SOURCE_DATE_EPOCH "-5" is not a time in Unix seconds`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("help", func(t *testing.T) {
		var usage strings.Builder
		if err := run([]string{"--help"}, io.Discard, &usage); err != nil {
			t.Fatalf("--help: %v", err)
		}
		if !strings.Contains(usage.String(), "-binary") {
			t.Errorf("--help does not list --binary:\n%s", usage.String())
		}
	})
}

// TestRefusesToReplaceOtherDirectories: --out names a directory build
// replaces, so one that is not an image layout is left alone.
func TestRefusesToReplaceOtherDirectories(t *testing.T) {
	out := t.TempDir()
	keep := filepath.Join(out, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(baseArgs(), "--out", out)
	args = append(args, binaryArgs(t, "linux/amd64")...)
	err := run(args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "exists and is not an OCI image layout; not replacing it") {
		t.Fatalf("got %v", err)
	}
	if data, err := os.ReadFile(keep); err != nil || string(data) != "mine" {
		t.Errorf("notes.txt: %q, %v", data, err)
	}
}
