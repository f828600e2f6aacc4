package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// parseLifetime parses a Go duration, or a whole number of days like 30d.
func parseLifetime(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("expiry %q is not a positive duration such as 12h or 30d", s)
	}
	return d, nil
}

func retentionText(d time.Duration) string {
	switch {
	case d == 0:
		return "forever"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func sizeText(b int64) string {
	const unit = 1024
	if b == 0 {
		return "-"
	}
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTP"[exp])
}

func ruleText(r store.PinRule) string {
	switch {
	case r.KeepRevisions > 0 && r.KeepFor > 0:
		return strconv.Itoa(r.KeepRevisions) + " newest, younger than " + retentionText(r.KeepFor)
	case r.KeepRevisions > 0:
		return strconv.Itoa(r.KeepRevisions) + " newest revisions"
	case r.KeepFor > 0:
		return "revisions younger than " + retentionText(r.KeepFor)
	}
	return "every revision"
}
