package wan

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// ErrNoTC is returned when tc(8) cannot be found.
var ErrNoTC = errors.New("wan: tc not found in PATH, /usr/sbin or /sbin: install iproute2 (apt-get install iproute2)")

// tcCandidates are tried after PATH, because sudo and cron often run with a
// PATH that lacks the sbin directories where Debian puts tc. A variable so
// that tests can pretend tc is missing.
var tcCandidates = []string{"/usr/sbin/tc", "/sbin/tc"}

// The class handles. Traffic the filter does not classify goes to htb's
// direct queue (the qdisc has no default class), which sends it unshaped:
// that keeps other loopback traffic at full speed without a second class
// whose "huge" rate would still be a cap.
const (
	qdiscHandle = "1:"
	classID     = "1:10"
)

// htbQuantum is the bytes a class may send per round. It must cover one
// loopback packet (TCP hands lo segments of up to 64 KiB), and setting it
// also silences tc's "quantum is big" warning, which rate/r2q triggers at
// WAN rates.
const htbQuantum = 128 << 10

func findTC() (string, error) {
	if p, err := exec.LookPath("tc"); err == nil {
		return p, nil
	}
	for _, p := range tcCandidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoTC
}

// runTC runs tc and folds its stderr into the error, which is where tc says
// what went wrong ("Exclusivity flag on, cannot modify").
func runTC(tc string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tc, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("wan: %s %s: %w: %s", tc, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// htbBurst is the class's burst and cburst in bytes: 1 ms at the rate, and
// at least two loopback packets, so that one 64 KiB packet never overdraws
// the bucket (tc's default burst is sized for 1600-byte packets). A larger
// burst would let short transfers beat the cap.
func htbBurst(rate int64) int64 {
	return max(rate/1000, 2*64<<10)
}

// installHTB caps the aggregate of everything sent from TCP source port
// port on lo to rate bytes per second.
func installHTB(tc string, port int, rate int64) error {
	if _, err := runTC(tc, "qdisc", "add", "dev", "lo", "root", "handle", qdiscHandle, "htb"); err != nil {
		return err
	}
	bits := strconv.FormatInt(rate*8, 10) + "bit"
	burst := strconv.FormatInt(htbBurst(rate), 10)
	steps := [][]string{
		{"class", "add", "dev", "lo", "parent", qdiscHandle, "classid", classID, "htb",
			"rate", bits, "ceil", bits, "burst", burst, "cburst", burst, "quantum", strconv.Itoa(htbQuantum)},
		// u32's "ip sport" reads the port 20 bytes into the IP header: right
		// for loopback TCP, whose packets carry no IP options.
		{"filter", "add", "dev", "lo", "parent", qdiscHandle, "protocol", "ip", "prio", "1",
			"u32", "match", "ip", "sport", strconv.Itoa(port), "0xffff", "flowid", classID},
	}
	for _, args := range steps {
		if _, err := runTC(tc, args...); err != nil {
			return errors.Join(err, removeHTB(tc))
		}
	}
	return nil
}

func removeHTB(tc string) error {
	_, err := runTC(tc, "qdisc", "del", "dev", "lo", "root")
	return err
}

var sentRE = regexp.MustCompile(`Sent (\d+) bytes`)

// classSent reads the bytes the capped class has sent. htb classes have no
// JSON output in iproute2 6.1 (tc -j prints text for them), hence the regexp.
func classSent(tc string) (int64, error) {
	out, err := runTC(tc, "-s", "class", "show", "dev", "lo", "classid", classID)
	if err != nil {
		return 0, err
	}
	m := sentRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wan: no byte count for class %s in tc output %q", classID, out)
	}
	return strconv.ParseInt(m[1], 10, 64)
}
