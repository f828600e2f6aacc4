package main

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"strings"
)

// larderMain is the package every binary put in the image must be built
// from.
const larderMain = "github.com/larder-cache/larder/cmd/larder"

// A platform is one the image can be built for: its name as --binary and
// container tools spell it, and what a Go binary built for it is.
type platform struct {
	name    string // os/arch[/variant]
	arch    string // OCI's architecture, which is GOARCH
	variant string // OCI's variant: v7 for GOARM=7
	goarm   string // the GOARM a binary for it is built with
	machine elf.Machine
	class   elf.Class
	order   int // its place in the image index
}

// platforms are the Linux targets larder's release builds, in the order
// the image index lists them.
var platforms = func() []platform {
	ps := []platform{
		{name: "linux/amd64", arch: "amd64", machine: elf.EM_X86_64, class: elf.ELFCLASS64},
		{name: "linux/arm64", arch: "arm64", machine: elf.EM_AARCH64, class: elf.ELFCLASS64},
		{name: "linux/arm/v7", arch: "arm", variant: "v7", goarm: "7", machine: elf.EM_ARM, class: elf.ELFCLASS32},
		{name: "linux/arm/v6", arch: "arm", variant: "v6", goarm: "6", machine: elf.EM_ARM, class: elf.ELFCLASS32},
		{name: "linux/386", arch: "386", machine: elf.EM_386, class: elf.ELFCLASS32},
	}
	for i := range ps {
		ps[i].order = i
	}
	return ps
}()

func lookupPlatform(name string) (platform, bool) {
	for _, p := range platforms {
		if p.name == name {
			return p, true
		}
	}
	return platform{}, false
}

func platformNames() []string {
	names := make([]string, len(platforms))
	for i, p := range platforms {
		names[i] = p.name
	}
	return names
}

// checkBinary makes sure that the file at path runs on p from an image with
// nothing else in it: a static ELF executable for p's machine, built by Go
// for p from larder's main package.
func checkBinary(p platform, path string) error {
	f, err := elf.Open(path)
	if err != nil {
		if _, ok := err.(*elf.FormatError); ok {
			return fmt.Errorf("%s for %s is not an ELF executable", path, p.name)
		}
		return fmt.Errorf("binary for %s: %w", p.name, err)
	}
	defer f.Close()
	if f.Machine != p.machine || f.Class != p.class || f.Data != elf.ELFDATA2LSB {
		return fmt.Errorf("%s is an ELF executable for %s, not for %s (%s): build it with %s",
			path, describeELF(f), p.name, describeMachine(p.machine, p.class), goEnv(p))
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s for %s is an ELF %s, not an executable", path, p.name, f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			interp := make([]byte, prog.Filesz)
			_, _ = prog.ReadAt(interp, 0)
			return fmt.Errorf("%s for %s is linked dynamically (it needs %s, which the image does not have): build it with CGO_ENABLED=0",
				path, p.name, strings.TrimRight(string(interp), "\x00"))
		}
	}

	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s for %s carries no Go build information, so it is not larder as go build makes it: %w", path, p.name, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" || settings["GOARCH"] != p.arch {
		return fmt.Errorf("%s was built for GOOS=%s GOARCH=%s, not for %s: build it with %s",
			path, settings["GOOS"], settings["GOARCH"], p.name, goEnv(p))
	}
	// GOARM may carry a float mode after a comma: GOARM=7,softfloat.
	if goarm, _, _ := strings.Cut(settings["GOARM"], ","); goarm != p.goarm {
		return fmt.Errorf("%s was built with GOARM=%s, not for %s: build it with %s", path, goarm, p.name, goEnv(p))
	}
	if bi.Path != larderMain {
		return fmt.Errorf("%s for %s is %s, not larder (%s)", path, p.name, orUnknown(bi.Path), larderMain)
	}
	return nil
}

// goEnv is the environment go build needs to build larder for p.
func goEnv(p platform) string {
	env := "CGO_ENABLED=0 GOOS=linux GOARCH=" + p.arch
	if p.goarm != "" {
		env += " GOARM=" + p.goarm
	}
	return env
}

// describeELF says what machine f is for, in words.
func describeELF(f *elf.File) string {
	d := describeMachine(f.Machine, f.Class)
	if f.Data == elf.ELFDATA2MSB {
		d += ", big-endian"
	}
	return d
}

func describeMachine(m elf.Machine, c elf.Class) string {
	bits := "32-bit"
	if c == elf.ELFCLASS64 {
		bits = "64-bit"
	}
	name := map[elf.Machine]string{
		elf.EM_X86_64:  "x86-64",
		elf.EM_AARCH64: "arm64",
		elf.EM_ARM:     "arm",
		elf.EM_386:     "x86",
	}[m]
	if name == "" {
		name = m.String()
	}
	return name + ", " + bits
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown program"
	}
	return s
}
