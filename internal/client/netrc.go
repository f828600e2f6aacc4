package client

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
)

// NetrcPassword returns the password a netrc file gives for host (the
// entry of the machine host, else the default entry), as Nix sends it, and
// whether there is one. A netrc file is a sequence of tokens: machine NAME
// or default, each followed by login, password and account values; macdef
// bodies run to the next empty line.
func NetrcPassword(path, host string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false, fmt.Errorf("read netrc file: %w", err)
	}
	var words []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	inMacro := false
	for sc.Scan() {
		line := sc.Text()
		if inMacro {
			inMacro = len(bytes.TrimSpace([]byte(line))) > 0
			continue
		}
		ws := bytes.Fields([]byte(line))
		for i, w := range ws {
			if string(w) == "macdef" {
				inMacro = true
				ws = ws[:i]
				break
			}
		}
		for _, w := range ws {
			words = append(words, string(w))
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("read netrc file %s: %w", path, err)
	}
	var def, found string
	var hasDef, hasFound bool
	cur := "" // the machine the words belong to; "\x00" for default
	for i := 0; i < len(words); i++ {
		switch words[i] {
		case "machine":
			if i+1 < len(words) {
				i++
				cur = words[i]
			}
		case "default":
			cur = "\x00"
		case "login", "account":
			i++
		case "password":
			if i+1 >= len(words) {
				break
			}
			i++
			switch {
			case cur == host && !hasFound:
				found, hasFound = words[i], true
			case cur == "\x00" && !hasDef:
				def, hasDef = words[i], true
			}
		}
	}
	if hasFound {
		return found, true, nil
	}
	return def, hasDef, nil
}
