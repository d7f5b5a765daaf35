package hooks

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxItems bounds how many files one request may name after its
// patterns are expanded, and how many frames ParseFrames and ExpandPattern
// produce. A task's whole sequence is a few thousand files; 100k leaves
// room for multi-view, multi-layer jobs while keeping one request's
// memory and backend work bounded.
const DefaultMaxItems = 100_000

// ErrTooManyItems is wrapped by every error that a request, frame list or
// pattern would expand past the item limit. The server turns it into the
// rejection reason "too_many_items" rather than "bad_frames".
var ErrTooManyItems = errors.New("hooks: too many items")

// maxFrame bounds frame numbers to 9 digits, so range sizes and padded
// widths never overflow and an absurd number is a clear error rather than
// a surprise.
const maxFrame = 999_999_999

// UDIMToken stands for a UDIM tile number (1001-1999) in a sequence
// pattern's file name.
const UDIMToken = "<UDIM>"

// The UDIM tile numbers: 10 tiles across, 100 up.
const (
	minUDIM = 1001
	maxUDIM = 1999
)

// ParseFrames parses a frame list: comma-separated elements, each a frame
// "N", a range "A-B" or a stepped range "A-BxS" (A <= B, S >= 1; frames
// may be negative, as in "-5--1"). The result is in the order given with
// duplicates dropped. It yields at most DefaultMaxItems frames, and
// computes a range's size before allocating it, so "1-999999999" is a
// cheap error (wrapping ErrTooManyItems) rather than a gigabyte.
func ParseFrames(s string) ([]int, error) {
	return parseFrames(s, DefaultMaxItems)
}

type frameSpan struct{ first, last, step int }

func (sp frameSpan) count() int { return (sp.last-sp.first)/sp.step + 1 }

func parseFrames(s string, limit int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("hooks: empty frame list")
	}
	var spans []frameSpan
	total := 0
	for rest := s; ; {
		elem, tail, more := strings.Cut(rest, ",")
		sp, err := parseFrameSpan(strings.TrimSpace(elem))
		if err != nil {
			return nil, fmt.Errorf("hooks: frame list %q: %w", s, err)
		}
		total += sp.count()
		if total > limit {
			return nil, fmt.Errorf("%w: frame list %q has more than %d frames", ErrTooManyItems, s, limit)
		}
		spans = append(spans, sp)
		if !more {
			break
		}
		rest = tail
	}
	out := make([]int, 0, total)
	if len(spans) == 1 {
		// One span cannot repeat a frame; skip the set.
		for f := spans[0].first; f <= spans[0].last; f += spans[0].step {
			out = append(out, f)
		}
		return out, nil
	}
	seen := make(map[int]struct{}, total)
	for _, sp := range spans {
		for f := sp.first; f <= sp.last; f += sp.step {
			if _, dup := seen[f]; !dup {
				seen[f] = struct{}{}
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func parseFrameSpan(e string) (frameSpan, error) {
	if e == "" {
		return frameSpan{}, errors.New("empty element")
	}
	first, rest, err := parseFrameNumber(e)
	if err != nil {
		return frameSpan{}, fmt.Errorf("%q: %w", e, err)
	}
	if rest == "" {
		return frameSpan{first, first, 1}, nil
	}
	if rest[0] != '-' {
		return frameSpan{}, fmt.Errorf("%q: want N, A-B or A-BxS", e)
	}
	last, rest, err := parseFrameNumber(rest[1:])
	if err != nil {
		return frameSpan{}, fmt.Errorf("%q: %w", e, err)
	}
	step := 1
	if rest != "" {
		if rest[0] != 'x' {
			return frameSpan{}, fmt.Errorf("%q: want N, A-B or A-BxS", e)
		}
		var tail string
		step, tail, err = parseFrameNumber(rest[1:])
		if err != nil || tail != "" || step < 1 {
			return frameSpan{}, fmt.Errorf("%q: the step must be a whole number >= 1", e)
		}
	}
	if last < first {
		return frameSpan{}, fmt.Errorf("%q: the range ends before it starts", e)
	}
	return frameSpan{first, last, step}, nil
}

// parseFrameNumber reads an optionally negative decimal of at most 9
// digits from the front of s.
func parseFrameNumber(s string) (n int, rest string, err error) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, s, errors.New("want a frame number")
	}
	if j-i > 9 {
		return 0, s, fmt.Errorf("frame number %s is out of range (at most %d)", s[:j], maxFrame)
	}
	n, _ = strconv.Atoi(s[:j]) // 9 digits and a sign always fit
	return n, s[j:], nil
}

type tokenKind uint8

const (
	tokLiteral    tokenKind = iota
	tokFrame                // %d or %0Nd
	tokView                 // %V
	tokViewLetter           // %v
)

type patternToken struct {
	kind  tokenKind
	lit   string
	width int // tokFrame: zero-padded width, 0 for %d
}

// parsePattern splits a printf-style sequence pattern into literals and
// tokens. Only %d, %0Nd (1 <= N <= 9), %V, %v and %% exist: anything else
// is more likely a DCC token the hook forgot to translate (####, $F, %4d)
// than a file name, so it is an error rather than a literal.
func parsePattern(p string) (toks []patternToken, hasFrame, hasView bool, err error) {
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			toks = append(toks, patternToken{kind: tokLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(p) {
			return nil, false, false, fmt.Errorf("hooks: pattern %q ends with a lone %%", p)
		}
		switch p[i+1] {
		case '%':
			lit.WriteByte('%')
			i++
		case 'd':
			flush()
			toks = append(toks, patternToken{kind: tokFrame})
			hasFrame = true
			i++
		case 'V', 'v':
			flush()
			k := tokView
			if p[i+1] == 'v' {
				k = tokViewLetter
			}
			toks = append(toks, patternToken{kind: k})
			hasView = true
			i++
		case '0':
			if i+3 < len(p) && p[i+2] >= '1' && p[i+2] <= '9' && p[i+3] == 'd' {
				flush()
				toks = append(toks, patternToken{kind: tokFrame, width: int(p[i+2] - '0')})
				hasFrame = true
				i += 3
				continue
			}
			return nil, false, false, fmt.Errorf("hooks: pattern %q: bad token at byte %d (want %%0Nd with 1 <= N <= 9)", p, i)
		default:
			return nil, false, false, fmt.Errorf("hooks: pattern %q: unknown token at byte %d (only %%d, %%0Nd, %%V, %%v and %%%% are expanded)", p, i)
		}
	}
	flush()
	return toks, hasFrame, hasView, nil
}

// ExpandPattern expands a printf-style sequence pattern: %d and %0Nd
// (N <= 9, as C printf pads: -1 with %04d is "-001") take each frame, %V
// each view's name and %v its first letter, and %% is a literal %. A
// pattern with a frame token needs frames and one without must not be
// given any, and likewise for views, because a mismatch means the hook
// built the request wrongly. The result holds len(frames) x len(views)
// paths, frame-major, duplicates kept; at most DefaultMaxItems of them.
// UDIMToken is left as it is: tiles are the server's business, because
// only it can list which tiles exist.
func ExpandPattern(pattern string, frames []int, views []string) ([]string, error) {
	return expandPattern(pattern, frames, views, DefaultMaxItems)
}

func expandPattern(pattern string, frames []int, views []string, limit int) ([]string, error) {
	toks, hasFrame, hasView, err := parsePattern(pattern)
	if err != nil {
		return nil, err
	}
	switch {
	case hasFrame && len(frames) == 0:
		return nil, fmt.Errorf("hooks: pattern %q has a frame token but no frames were given", pattern)
	case !hasFrame && len(frames) > 0:
		return nil, fmt.Errorf("hooks: frames were given but pattern %q has no frame token", pattern)
	case hasView && len(views) == 0:
		return nil, fmt.Errorf("hooks: pattern %q has a view token but no views were given", pattern)
	case !hasView && len(views) > 0:
		return nil, fmt.Errorf("hooks: views were given but pattern %q has no %%V or %%v", pattern)
	}
	for _, v := range views {
		if err := checkView(v); err != nil {
			return nil, err
		}
	}
	for _, f := range frames {
		if f < -maxFrame || f > maxFrame {
			return nil, fmt.Errorf("hooks: frame %d is out of range (at most %d)", f, maxFrame)
		}
	}
	nf, nv := max(len(frames), 1), max(len(views), 1)
	// Both counts are bounded by the request body, so the product fits.
	if nf*nv > limit {
		return nil, fmt.Errorf("%w: pattern %q gives %d x %d paths, more than %d", ErrTooManyItems, pattern, nf, nv, limit)
	}
	out := make([]string, 0, nf*nv)
	var buf []byte
	for fi := 0; fi < nf; fi++ {
		for vi := 0; vi < nv; vi++ {
			buf = buf[:0]
			for _, t := range toks {
				switch t.kind {
				case tokLiteral:
					buf = append(buf, t.lit...)
				case tokFrame:
					buf = appendFrame(buf, frames[fi], t.width)
				case tokView:
					buf = append(buf, views[vi]...)
				case tokViewLetter:
					_, n := utf8.DecodeRuneInString(views[vi])
					buf = append(buf, views[vi][:n]...)
				}
			}
			out = append(out, string(buf))
		}
	}
	return out, nil
}

// appendFrame formats f as C's %0Nd does: the width counts the sign.
func appendFrame(buf []byte, f, width int) []byte {
	neg := f < 0
	if neg {
		f = -f
	}
	var digits [10]byte
	d := strconv.AppendInt(digits[:0], int64(f), 10)
	n := len(d)
	if neg {
		n++
		buf = append(buf, '-')
	}
	for ; n < width; n++ {
		buf = append(buf, '0')
	}
	return append(buf, d...)
}

// checkView accepts names that are one path component's worth of text,
// so a view can never add a directory level or a NUL.
func checkView(v string) error {
	switch {
	case v == "":
		return errors.New("hooks: empty view name")
	case v == "." || v == "..":
		return fmt.Errorf("hooks: view name %q", v)
	case strings.ContainsAny(v, "/\x00"):
		return fmt.Errorf("hooks: view name %q contains / or NUL", v)
	}
	return nil
}

// matchUDIM reports the tile a directory entry name stands for, if it is
// prefix + four digits in 1001..1999 + suffix.
func matchUDIM(name, prefix, suffix string) (int, bool) {
	if len(name) != len(prefix)+4+len(suffix) || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	t := 0
	for _, c := range []byte(name[len(prefix) : len(prefix)+4]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		t = t*10 + int(c-'0')
	}
	return t, t >= minUDIM && t <= maxUDIM
}
