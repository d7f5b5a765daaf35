package mountinfo

import (
	"bufio"
	"os"
	"strings"
)

// Count returns how many mounts are stacked at dir (an absolute, clean
// path).
func Count(dir string) (int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescape(fields[4]) == dir {
			n++
		}
	}
	return n, sc.Err()
}

// Mounted reports whether anything is mounted at dir, a dead FUSE mount
// included.
func Mounted(dir string) (bool, error) {
	n, err := Count(dir)
	return n > 0, err
}

// unescape undoes the octal escapes the kernel writes for the characters
// that would break mountinfo's fields.
func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// Type returns the filesystem type of the topmost mount at dir (an
// absolute, clean path), "fuse.jitfs" for a jitfs mount; "" when nothing
// is mounted there.
func Type(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	typ := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= 4 || unescape(fields[4]) != dir {
			continue
		}
		// The optional fields end at "-"; the type follows it.
		for i := 5; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				typ = fields[i+1] // later lines are mounted on top
				break
			}
		}
	}
	return typ, sc.Err()
}

// OfType returns the mountpoints of every mount of filesystem type typ
// ("fuse.jitfs"), in mount order.
func OfType(typ string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i := 5; i+1 < len(fields) && len(fields) > 4; i++ {
			if fields[i] == "-" {
				if fields[i+1] == typ {
					out = append(out, unescape(fields[4]))
				}
				break
			}
		}
	}
	return out, sc.Err()
}
