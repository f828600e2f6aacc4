package store

import "testing"

// TestFitRoots runs FitRoots over roots whose closures add known sizes:
// the pins take pins bytes, root i adds sizes[i].
func TestFitRoots(t *testing.T) {
	sizes := []int64{10, 20, 5, 40, 1}
	for _, tc := range []struct {
		pins, max     int64
		wantKept      int64 // roots kept
		wantOverQuota bool
	}{
		{pins: 0, max: 34, wantKept: 2}, // 10+20 fits, +5 does not
		{pins: 0, max: 35, wantKept: 3}, // 10+20+5
		{pins: 0, max: 9, wantKept: 0},  // not even the first
		{pins: 5, max: 75, wantKept: 3}, // 5+35 fits, +40 does not
		{pins: 50, max: 40, wantKept: 0, wantOverQuota: true},
		{pins: 0, max: 75, wantKept: 4}, // all but the last fit
	} {
		filled := int64(-1)
		prefix := func(n int64) (Usage, error) {
			filled = n
			u := Usage{Paths: n, Bytes: tc.pins}
			for _, s := range sizes[:n] {
				u.Bytes += s
			}
			return u, nil
		}
		u, dropped, over, err := FitRoots(int64(len(sizes)), tc.max, prefix)
		if err != nil || over != tc.wantOverQuota || dropped != int64(len(sizes))-tc.wantKept {
			t.Errorf("pins %d, max %d: dropped %d, over quota %v, %v; want %d kept, over quota %v",
				tc.pins, tc.max, dropped, over, err, tc.wantKept, tc.wantOverQuota)
			continue
		}
		if filled != tc.wantKept || u.Paths != tc.wantKept || (!over && u.Bytes > tc.max) {
			t.Errorf("pins %d, max %d: the kept set was left with %d roots (usage %+v), want %d", tc.pins, tc.max, filled, u, tc.wantKept)
		}
	}
}
