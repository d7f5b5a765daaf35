package metastore

import (
	"encoding/binary"
	"fmt"
	"io"
)

// bbolt's page layout (go.etcd.io/bbolt/internal/common/page.go), stable
// since boltdb: a 16-byte header (id u64, flags u16, count u16, overflow
// u32), then count 16-byte elements. A branch element is pos u32, ksize
// u32, child pgid u64; a leaf element is flags u32, pos u32, ksize u32,
// vsize u32. pos counts from the element itself. A bucket's value starts
// with its root pgid (u64) and sequence (u64); root 0 means an inline
// bucket, whose leaf page follows in the value.
const (
	pageHeader     = 16
	pageElement    = 16
	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	bucketLeafFlag = 0x01
	maxTreeDepth   = 64
)

// pageChecker bounds-checks, from the file through plain reads, every page
// of the tree that tx.Check will follow through bbolt's memory map. Check
// reads in a goroutine of its own, where a fault (a key length or page
// number past the end of the file) kills the process instead of
// panicking; once every element of every reachable page lies inside the
// file and no page is reached twice (no cycle to recurse on forever),
// Check cannot fault and returns the rest of what is wrong as errors.
type pageChecker struct {
	r        io.ReaderAt
	size     int64  // of the file
	pageSize uint64 // bytes
	hwm      uint64 // the meta's high water mark: pages in use are below it
	seen     map[uint64]bool
}

func (c *pageChecker) page(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	if id < 2 || id >= c.hwm {
		return fmt.Errorf("page %d: out of bounds [2, %d)", id, c.hwm)
	}
	if c.seen[id] {
		return fmt.Errorf("page %d: reached twice", id)
	}
	c.seen[id] = true
	var hdr [pageHeader]byte
	if _, err := c.r.ReadAt(hdr[:], int64(id*c.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr[0:]); got != id {
		return fmt.Errorf("page %d: identifies as %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= c.hwm || int64((id+overflow+1)*c.pageSize) > c.size {
		return fmt.Errorf("page %d: %d overflow pages run past the end", id, overflow)
	}
	for i := id + 1; i <= id+overflow; i++ {
		if c.seen[i] {
			return fmt.Errorf("page %d: overflow page %d reached twice", id, i)
		}
		c.seen[i] = true
	}
	buf := make([]byte, (overflow+1)*c.pageSize)
	if _, err := c.r.ReadAt(buf, int64(id*c.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	return c.elements(id, buf, depth)
}

// elements checks the elements of a page (or an inline bucket's page) held
// in buf and the pages and buckets they lead to.
func (c *pageChecker) elements(id uint64, buf []byte, depth int) error {
	if len(buf) < pageHeader {
		return fmt.Errorf("page %d: %d bytes", id, len(buf))
	}
	flags := binary.LittleEndian.Uint16(buf[8:])
	count := uint64(binary.LittleEndian.Uint16(buf[10:]))
	n := uint64(len(buf))
	if pageHeader+count*pageElement > n {
		return fmt.Errorf("page %d: %d elements overrun it", id, count)
	}
	for i := range count {
		off := pageHeader + i*pageElement
		e := buf[off : off+pageElement]
		switch flags {
		case branchPageFlag:
			pos, ksize := uint64(binary.LittleEndian.Uint32(e[0:])), uint64(binary.LittleEndian.Uint32(e[4:]))
			if off+pos+ksize > n {
				return fmt.Errorf("page %d: branch key %d overruns it", id, i)
			}
			if err := c.page(binary.LittleEndian.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
		case leafPageFlag:
			lflags := binary.LittleEndian.Uint32(e[0:])
			pos, ksize := uint64(binary.LittleEndian.Uint32(e[4:])), uint64(binary.LittleEndian.Uint32(e[8:]))
			vsize := uint64(binary.LittleEndian.Uint32(e[12:]))
			if off+pos+ksize+vsize > n {
				return fmt.Errorf("page %d: leaf element %d overruns it", id, i)
			}
			if lflags&bucketLeafFlag == 0 {
				continue
			}
			v := buf[off+pos+ksize : off+pos+ksize+vsize]
			if len(v) < 16 {
				return fmt.Errorf("page %d: bucket %d has a %d-byte header", id, i, len(v))
			}
			if root := binary.LittleEndian.Uint64(v); root != 0 {
				if err := c.page(root, depth+1); err != nil {
					return err
				}
			} else if err := c.elements(id, v[16:], depth+1); err != nil {
				return fmt.Errorf("inline bucket: %w", err)
			}
		default:
			return fmt.Errorf("page %d: flags %#x, not a branch or leaf page", id, flags)
		}
	}
	return nil
}
