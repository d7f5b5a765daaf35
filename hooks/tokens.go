package hooks

import (
	"fmt"
	"strconv"
	"strings"
)

// UVTileToken stands for a UDIM tile written as its column and row,
// 1-based: tile 1001 is "u1_v1", 1012 is "u2_v2" (Mudbox's u<U>_v<V>
// naming, which MaterialX, OpenImageIO and Blender also call <UVTILE>).
const UVTileToken = "<UVTILE>"

// TranslateTokens rewrites the frame tokens people type by hand into the
// printf form the protocol speaks, so a manifest or a command line may use
// whatever its DCC shows:
//
//   - a run of N '#' (Nuke, Blender: one '#' per digit) is %0Nd;
//   - a run of N '@' (one '@' per digit, as Maya's FCheck and RV read it)
//     is %0Nd;
//   - $F is %d, and $F1 to $F9 (Houdini) are %01d to %09d; ${F} and
//     ${F1} to ${F9} are the same, for when a letter, digit or _ follows.
//
// printf tokens (%d, %0Nd, %V, %v, %%) and <UDIM> and <UVTILE> are kept as
// they are. A '#' run is one per digit, not the four digits some tools
// read a lone '#' as, because that is what Nuke and Blender write. Runs
// longer than 9 and Houdini variables other than $F ($FF, $FSTART,
// $F10, ${FF}, ...) are errors: they would otherwise be taken for a
// literal file name that exists nowhere.
func TranslateTokens(p string) (string, error) {
	if !strings.ContainsAny(p, "#@$") {
		return p, nil
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '#' || c == '@':
			j := i
			for j < len(p) && p[j] == c {
				j++
			}
			if j-i > 9 {
				return "", fmt.Errorf("hooks: pattern %q: %d %q in a row (at most 9 digits)", p, j-i, c)
			}
			fmt.Fprintf(&b, "%%0%dd", j-i)
			i = j
		case c == '$' && strings.HasPrefix(p[i:], "${F"):
			// Houdini's braces delimit the name, so a letter or digit may
			// follow: plate.${F4}_v2.exr.
			end := strings.IndexByte(p[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("hooks: pattern %q: ${F without } at byte %d", p, i)
			}
			switch name := p[i+2 : i+end]; {
			case name == "F":
				b.WriteString("%d")
			case len(name) == 2 && name[0] == 'F' && name[1] >= '1' && name[1] <= '9':
				fmt.Fprintf(&b, "%%0%cd", name[1])
			default:
				return "", fmt.Errorf("hooks: pattern %q: only ${F} and ${F1}..${F9} are frame tokens (at byte %d)", p, i)
			}
			i += end + 1
		case c == '$' && strings.HasPrefix(p[i:], "$F"):
			j := i + 2
			if j < len(p) && p[j] >= '1' && p[j] <= '9' {
				fmt.Fprintf(&b, "%%0%cd", p[j])
				j++
			}
			// Houdini reads a variable's name up to the first byte that
			// cannot be in one, so $F10 or $F4x is another variable (or a
			// width past 9), not $F1 then "0": an error, not a file name
			// that exists nowhere.
			if j < len(p) && isIdentByte(p[j]) {
				return "", fmt.Errorf("hooks: pattern %q: only $F and $F1..$F9 are frame tokens (at byte %d; write ${F4} when a letter, digit or _ follows)", p, i)
			}
			if j == i+2 {
				b.WriteString("%d")
			}
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// isIdentByte: what may follow a Houdini variable's name, so "$FF" is
// another variable while "$F.exr" is $F then ".exr".
func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// HasTileToken reports whether p holds <UDIM> or <UVTILE>.
func HasTileToken(p string) bool {
	return strings.Contains(p, UDIMToken) || strings.Contains(p, UVTileToken)
}

// tileToken is the tile token a pattern uses: "" for none, an error for
// both, since a tile is named one way.
func tileToken(p string) (string, error) {
	u, uv := strings.Contains(p, UDIMToken), strings.Contains(p, UVTileToken)
	switch {
	case u && uv:
		return "", fmt.Errorf("hooks: pattern %q has both %s and %s", p, UDIMToken, UVTileToken)
	case u:
		return UDIMToken, nil
	case uv:
		return UVTileToken, nil
	}
	return "", nil
}

// FormatTile writes tile (1001-1999) as tok spells it: "1012" for <UDIM>,
// "u2_v2" for <UVTILE>.
func FormatTile(tok string, tile int) string {
	if tok == UVTileToken {
		i := tile - minUDIM
		return "u" + strconv.Itoa(i%10+1) + "_v" + strconv.Itoa(i/10+1)
	}
	return strconv.Itoa(tile)
}

// tileParts splits a file name holding exactly one tile token (<UDIM> or
// <UVTILE>) into the token and what comes before and after it.
func tileParts(name string) (tok, prefix, suffix string, err error) {
	if tok, err = tileToken(name); err != nil {
		return "", "", "", err
	}
	if tok == "" {
		tok = UDIMToken
	}
	if n := strings.Count(name, tok); n != 1 {
		return "", "", "", fmt.Errorf("hooks: %q: want exactly one %s in the file name, found %d", name, tok, n)
	}
	prefix, suffix, _ = strings.Cut(name, tok)
	return tok, prefix, suffix, nil
}

// matchTile reports the tile a directory entry name stands for, if it is
// prefix + the tile spelt as tok spells it + suffix.
func matchTile(tok, name, prefix, suffix string) (int, bool) {
	if tok != UVTileToken {
		return matchUDIM(name, prefix, suffix)
	}
	if len(name) < len(prefix)+len(suffix) || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	mid := name[len(prefix) : len(name)-len(suffix)]
	us, vs, ok := strings.Cut(mid, "_v")
	if !ok || !strings.HasPrefix(us, "u") {
		return 0, false
	}
	u, okU := smallPositive(us[1:], 10)
	v, okV := smallPositive(vs, 100)
	if !okU || !okV {
		return 0, false
	}
	return minUDIM + (u - 1) + 10*(v-1), true
}

// smallPositive parses 1..limit written without a sign or leading zero,
// the only spelling of a tile's column or row, so "u01_v1" is no tile.
func smallPositive(s string, limit int) (int, bool) {
	if s == "" || s[0] == '0' || len(s) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 1 && n <= limit
}

// MatchTiles returns the directory entries that are tiles of the file
// name pattern name (holding one <UDIM> or <UVTILE>), in the order given,
// as the daemon matches them when it lists a directory for a pattern
// without tiles. The CLI uses it to expand tiles through a mount.
func MatchTiles(name string, entries []string) ([]string, error) {
	tok, prefix, suffix, err := tileParts(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if _, ok := matchTile(tok, e, prefix, suffix); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// HasFrameToken reports whether p, as written by hand, holds a frame
// token, or something that would be one were it not malformed ($FF, a run
// of ten '#'): a manifest line with spaces is one path only when it has
// none, since a pattern's mistake must be reported, not taken for a name.
func HasFrameToken(p string) bool {
	t, err := TranslateTokens(p)
	if err != nil {
		return true
	}
	_, hasFrame, _, err := parsePattern(t)
	return err == nil && hasFrame
}
