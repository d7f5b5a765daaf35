package cache

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// The journal's format is described in doc.go: a JSON header line, then
// one line per range written to the data file and a line once the whole
// object is verified. Everything that reads or writes those lines is here,
// so the format lives in one place.

const journalVersion = 1

// completeLine records that the whole object was verified against its
// CRC32C.
const completeLine = "C\n"

// rangeLine records that bytes [start,end) of the data file are valid and
// have the CRC32C crc. It is appended only after the bytes are written.
func rangeLine(start, end int64, crc uint32) string {
	return fmt.Sprintf("R %d %d %08x\n", start, end, crc)
}

// journalHeader is the journal's first line. It names the object and the
// format, so that a journal left by another generation or format version is
// rewritten rather than trusted.
type journalHeader struct {
	V int `json:"v"`
	Meta
}

// span is a byte range recorded in the journal by an earlier run and not
// yet checked against its CRC32C in this one.
type span struct {
	start, end int64
	crc        uint32
}

// loadJournalLocked restores presence from the object's journal, or
// starts a fresh journal (a header only) when there is none or it cannot be
// used.
func (o *Object) loadJournalLocked() error {
	_, jnlPath := o.c.paths(o.key)
	if err := os.MkdirAll(filepath.Dir(jnlPath), 0o755); err != nil {
		return fmt.Errorf("cache: %s: %w", o.meta, err)
	}
	fresh := true
	if b, err := os.ReadFile(jnlPath); err == nil {
		fresh = !o.parseJournal(b)
	}
	if fresh {
		if err := o.writeHeaderLocked(jnlPath); err != nil {
			return err
		}
	}
	return nil
}

// parseJournal restores presence from a journal; false means the journal
// is unusable (absent header, other object, other version) and is rewritten.
func (o *Object) parseJournal(b []byte) bool {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return false
	}
	var h journalHeader
	if json.Unmarshal(b[:nl], &h) != nil || h.V != journalVersion || h.Gen != o.meta.Gen ||
		h.Size != o.meta.Size || h.Name != o.meta.Name || h.Bucket != o.meta.Bucket {
		return false
	}
	sawComplete := false
	sc := bufio.NewScanner(bytes.NewReader(b[nl+1:]))
	rest := b[nl+1:]
	for sc.Scan() {
		line := sc.Bytes()
		// bufio.Scanner yields a final line without its newline too; such a
		// line is a torn append and must not count.
		consumed := len(line) + 1
		if consumed > len(rest) || rest[len(line)] != '\n' {
			break
		}
		rest = rest[consumed:]
		f := bytes.Fields(line)
		switch {
		case len(f) == 1 && string(f[0]) == "C":
			sawComplete = true
		case len(f) == 4 && string(f[0]) == "R":
			s, e1 := strconv.ParseInt(string(f[1]), 10, 64)
			e, e2 := strconv.ParseInt(string(f[2]), 10, 64)
			crc, e3 := strconv.ParseUint(string(f[3]), 16, 32)
			if e1 != nil || e2 != nil || e3 != nil || s < 0 || e > o.meta.Size || s >= e || s%o.c.opts.BlockSize != 0 {
				continue
			}
			// A range written again (refetched after it failed its check)
			// supersedes what an earlier line said of those bytes: the old
			// CRC32C no longer describes them. What the old range held
			// outside the new one is dropped with it and fetched again.
			keep := o.unverified[:0]
			for _, old := range o.unverified {
				if old.end <= s || old.start >= e {
					keep = append(keep, old)
				}
			}
			o.unverified = append(keep, span{s, e, uint32(crc)})
		}
	}
	for _, sp := range o.unverified {
		o.markPresentLocked(sp.start, sp.end)
	}
	o.complete = sawComplete && o.npresent == o.nblocks
	return true
}

func (o *Object) writeHeaderLocked(jnlPath string) error {
	hb, _ := json.Marshal(journalHeader{V: journalVersion, Meta: o.meta})
	tmp := jnlPath + ".tmp"
	if err := os.WriteFile(tmp, append(hb, '\n'), 0o644); err != nil {
		return fmt.Errorf("cache: write journal %s: %w", jnlPath, err)
	}
	if err := os.Rename(tmp, jnlPath); err != nil {
		return fmt.Errorf("cache: write journal %s: %w", jnlPath, err)
	}
	return nil
}

// resetLocked forgets every cached range of the object (after a checksum
// failure). The data file's bytes stay but are no longer trusted.
func (o *Object) resetLocked() {
	o.resets++
	o.clearPresence()
	if o.jnl == nil {
		return
	}
	_, jnlPath := o.c.paths(o.key)
	o.jnl.Close()
	o.jnl = nil
	if err := o.writeHeaderLocked(jnlPath); err != nil {
		o.c.log.Warn("cache: reset journal", "object", o.meta.String(), "err", err)
		return
	}
	if f, err := os.OpenFile(jnlPath, os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		o.jnl = f
	}
}
