package store

// Usage is the number of narinfos of a kept set and the NAR bytes they
// serve.
type Usage struct{ Paths, Bytes int64 }

// FitRoots is the quota step of Collect, shared by the metadata stores,
// for when the closure of all roots is known to exceed maxSize. roots is
// the number of roots other than pins, numbered from the most recently
// used; prefix(n) fills the kept set with the closure of the pins and the
// first n roots and returns its usage, which only grows with n. FitRoots
// finds by bisection the longest run of roots whose closure fits and
// leaves the kept set filled with it. It returns that usage, how many
// roots it dropped, and whether the pins alone exceed maxSize (then it
// keeps only them).
func FitRoots(roots, maxSize int64, prefix func(n int64) (Usage, error)) (Usage, int64, bool, error) {
	fits, err := prefix(0)
	if err != nil || fits.Bytes > maxSize {
		return fits, roots, err == nil, err
	}
	// The closure of the first lo roots fits, that of the first hi does not.
	lo, hi, filled := int64(0), roots, int64(0)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		u, err := prefix(mid)
		if err != nil {
			return Usage{}, 0, false, err
		}
		if filled = mid; u.Bytes <= maxSize {
			lo, fits = mid, u
		} else {
			hi = mid
		}
	}
	if filled != lo {
		fits, err = prefix(lo)
	}
	return fits, roots - lo, false, err
}
