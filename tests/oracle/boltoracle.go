// boltoracle: the Go reference for ipamguard's pure-Python bbolt engine.
//
// It uses Debian's go.etcd.io/bbolt (v1.3.x) and the standard library only.
// Build offline:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o boltoracle boltoracle.go
//
// Commands (an error prints a message on stderr and exits 2):
//
//	check FILE                       structural walk + bbolt's tx.Check(); one error a line; exit 1 if any
//	dump FILE                        canonical JSON of every bucket, key and sequence (hex)
//	info FILE                        JSON of the meta in use (page size, txid, high water mark, ...)
//	stats FILE                       bbolt's BucketStats per top-level bucket and in total (depth, pages, ...)
//	apply FILE OPSFILE [--page-size N]
//	                                 apply a JSON ops file, one db.Update per inner list
//	hold FILE [--seconds S] [--readonly 1]
//	                                 open with bbolt (its flock: exclusive, or shared with --readonly),
//	                                 print "locked", keep it S seconds (default 3600) or until stdin closes
//	ipam-gen FILE --network NAME --subnet CIDR --count N [--ids-per-tx K] [--first-index I]
//	                                 write allocations exactly as containers/common's netavark ipam.go
//	ipam-dump FILE                   the work of `ipamguard dump --json`, in Go
//	ipam-release FILE CONTAINER_ID   the work of podman's deallocIPs for every network bucket
//	serve                            many requests in one process (for fuzzing): one a line on
//	                                 stdin, "check FILE", "dump FILE" or "checkdump FILE"; one JSON
//	                                 answer a line on stdout, {"errors": [...], "dump": {...}|null}
//	                                 ("dump" only when the check passes), or {"fail": "..."} where
//	                                 the one-shot command would exit 2
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	magic            = 0xED0CDAED
	version          = 2
	pageHeaderSize   = 16
	elemSize         = 16 // leaf and branch elements are both 16 bytes
	bucketHeaderSize = 16
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	metaPageFlag     = 0x04
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01
	pgidNoFreelist   = 0xffffffffffffffff
	maxDepth         = 64
)

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "boltoracle: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	// A fault in the mmap (a damaged file) becomes a recoverable panic.
	debug.SetPanicOnFault(true)
	defer func() {
		if r := recover(); r != nil {
			fail("panic: %v", r)
		}
	}()
	if len(os.Args) < 2 {
		fail("usage: boltoracle check|dump|info|stats|apply|hold|ipam-gen|ipam-dump|ipam-release|serve FILE ...")
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	code := 0
	switch cmd {
	case "check":
		code, err = cmdCheck(args)
	case "dump":
		err = cmdDump(args)
	case "info":
		err = cmdInfo(args)
	case "stats":
		err = cmdStats(args)
	case "apply":
		err = cmdApply(args)
	case "hold":
		err = cmdHold(args)
	case "ipam-gen":
		err = cmdIpamGen(args)
	case "ipam-dump":
		err = cmdIpamDump(args)
	case "ipam-release":
		err = cmdIpamRelease(args)
	case "serve":
		err = cmdServe(args)
	default:
		err = usageError{"unknown command " + strconv.Quote(cmd)}
	}
	if err != nil {
		fail("%s: %v", cmd, err)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------- arguments

// parseArgs splits positional arguments from --name VALUE options.
func parseArgs(args []string, npos int, opts map[string]*string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "--") {
			name := a[2:]
			value := ""
			if eq := strings.IndexByte(name, '='); eq >= 0 {
				name, value = name[:eq], name[eq+1:]
			} else {
				if i+1 >= len(args) {
					return nil, usageError{"option " + a + " needs a value"}
				}
				i++
				value = args[i]
			}
			p, ok := opts[name]
			if !ok {
				return nil, usageError{"unknown option --" + name}
			}
			*p = value
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) != npos {
		return nil, usageError{fmt.Sprintf("expected %d positional argument(s), got %d", npos, len(pos))}
	}
	return pos, nil
}

func atoi(name, s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, usageError{"--" + name + ": not an integer: " + strconv.Quote(s)}
	}
	return n, nil
}

func openRO(path string) (*bolt.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err // never let a read-only open create a file
	}
	return bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
}

// ---------------------------------------------------------------- raw file model

type metaInfo struct {
	index    int
	magic    uint32
	version  uint32
	pageSize uint32
	flags    uint32
	root     uint64
	sequence uint64
	freelist uint64
	pgid     uint64
	txid     uint64
	checksum uint64
	err      string
}

func parseMeta(data []byte, off int, index int) metaInfo {
	m := metaInfo{index: index}
	if off+pageHeaderSize+64 > len(data) {
		m.err = "meta page beyond the end of the file"
		return m
	}
	b := data[off+pageHeaderSize:]
	le := binary.LittleEndian
	m.magic = le.Uint32(b[0:])
	m.version = le.Uint32(b[4:])
	m.pageSize = le.Uint32(b[8:])
	m.flags = le.Uint32(b[12:])
	m.root = le.Uint64(b[16:])
	m.sequence = le.Uint64(b[24:])
	m.freelist = le.Uint64(b[32:])
	m.pgid = le.Uint64(b[40:])
	m.txid = le.Uint64(b[48:])
	m.checksum = le.Uint64(b[56:])
	h := fnv.New64a()
	_, _ = h.Write(b[:56])
	switch {
	case m.magic != magic:
		m.err = fmt.Sprintf("bad magic %#x", m.magic)
	case m.version != version:
		m.err = fmt.Sprintf("bad version %d", m.version)
	case m.checksum != 0 && m.checksum != h.Sum64():
		m.err = fmt.Sprintf("bad checksum %#x (computed %#x)", m.checksum, h.Sum64())
	}
	return m
}

type rawDB struct {
	data     []byte
	pageSize int
	meta     metaInfo
	metas    [2]metaInfo
}

// loadRaw reads the file and picks the meta exactly as bbolt 1.3 does: the page
// size comes from meta 0 if it is valid (else 4096), the valid meta with the
// highest txid wins.
func loadRaw(path string) (*rawDB, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // an *os.PathError
	}
	if len(data) < 0x1000 {
		return nil, fmt.Errorf("file too small (%d bytes)", len(data))
	}
	r := &rawDB{data: data, pageSize: os.Getpagesize()}
	m0 := parseMeta(data, 0, 0)
	if m0.err == "" {
		r.pageSize = int(m0.pageSize)
	}
	if r.pageSize < 512 || r.pageSize&(r.pageSize-1) != 0 {
		return nil, fmt.Errorf("unsupported page size %d", r.pageSize)
	}
	if len(data) < 2*r.pageSize {
		return nil, fmt.Errorf("file too small (%d bytes) for two meta pages", len(data))
	}
	m1 := parseMeta(data, r.pageSize, 1)
	r.metas = [2]metaInfo{m0, m1}
	a, b := m0, m1
	if m1.txid > m0.txid {
		a, b = m1, m0
	}
	switch {
	case a.err == "":
		r.meta = a
	case b.err == "":
		r.meta = b
	default:
		return nil, fmt.Errorf("no valid meta page: meta 0: %s; meta 1: %s", m0.err, m1.err)
	}
	return r, nil
}

func (r *rawDB) pageBytes(id uint64, npages uint64) []byte {
	start := id * uint64(r.pageSize)
	end := start + npages*uint64(r.pageSize)
	if id >= 1<<40 || npages >= 1<<40 || end > uint64(len(r.data)) {
		return nil
	}
	return r.data[start:end]
}

type pageHdr struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func readHdr(b []byte) pageHdr {
	le := binary.LittleEndian
	return pageHdr{le.Uint64(b), le.Uint16(b[8:]), le.Uint16(b[10:]), le.Uint32(b[12:])}
}

// freelistIDs returns the page ids listed on the freelist page.
func (r *rawDB) freelistIDs() ([]uint64, error) {
	m := r.meta
	if m.freelist == pgidNoFreelist {
		return nil, nil
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return nil, fmt.Errorf("freelist page %d outside 2..%d", m.freelist, m.pgid-1)
	}
	first := r.pageBytes(m.freelist, 1)
	if first == nil {
		return nil, fmt.Errorf("freelist page %d beyond the end of the file", m.freelist)
	}
	h := readHdr(first)
	if h.flags&freelistPageFlag == 0 {
		return nil, fmt.Errorf("freelist page %d has flags %#x", m.freelist, h.flags)
	}
	if h.id != m.freelist {
		return nil, fmt.Errorf("freelist page %d says it is page %d", m.freelist, h.id)
	}
	if m.freelist+uint64(h.overflow) >= m.pgid {
		return nil, fmt.Errorf("freelist page %d overflow %d beyond the high water mark %d", m.freelist, h.overflow, m.pgid)
	}
	p := r.pageBytes(m.freelist, uint64(h.overflow)+1)
	if p == nil {
		return nil, fmt.Errorf("freelist page %d overflow %d beyond the end of the file", m.freelist, h.overflow)
	}
	idx, count := 0, uint64(h.count)
	if h.count == 0xFFFF {
		idx = 1
		count = binary.LittleEndian.Uint64(p[pageHeaderSize:])
	}
	if uint64(pageHeaderSize)+(uint64(idx)+count)*8 > uint64(len(p)) || count > 1<<40 {
		return nil, fmt.Errorf("freelist page %d: %d ids do not fit in %d bytes", m.freelist, count, len(p))
	}
	ids := make([]uint64, count)
	for i := range ids {
		ids[i] = binary.LittleEndian.Uint64(p[pageHeaderSize+(idx+i)*8:])
	}
	return ids, nil
}

// ---------------------------------------------------------------- check

type checker struct {
	r       *rawDB
	errs    []string
	visited map[uint64]string
}

func (c *checker) errorf(format string, args ...interface{}) {
	if len(c.errs) < 1000 {
		c.errs = append(c.errs, fmt.Sprintf(format, args...))
	}
}

// checkPage validates one node (a page of the file or an inline page) and its
// subtree: bounds, flags, element offsets, key order and key ranges.
// lo (inclusive) and hi (exclusive) bound the keys, nil = unbounded.
func (c *checker) checkNode(where string, p []byte, lo, hi []byte, depth int, isRoot bool) {
	if depth > maxDepth {
		c.errorf("%s: tree deeper than %d", where, maxDepth)
		return
	}
	if len(p) < pageHeaderSize {
		c.errorf("%s: %d bytes, shorter than a page header", where, len(p))
		return
	}
	h := readHdr(p)
	isLeaf := h.flags&leafPageFlag != 0
	isBranch := h.flags&branchPageFlag != 0
	if isLeaf == isBranch || h.flags&^(leafPageFlag|branchPageFlag) != 0 {
		c.errorf("%s: invalid page flags %#x", where, h.flags)
		return
	}
	if isBranch && h.count == 0 {
		c.errorf("%s: branch page with no elements", where)
		return
	}
	if !isRoot && h.count == 0 {
		c.errorf("%s: empty leaf below a branch", where)
	}
	if pageHeaderSize+int(h.count)*elemSize > len(p) {
		c.errorf("%s: %d elements do not fit in %d bytes", where, h.count, len(p))
		return
	}
	le := binary.LittleEndian
	var prev []byte
	for i := 0; i < int(h.count); i++ {
		eoff := pageHeaderSize + i*elemSize
		e := p[eoff : eoff+elemSize]
		var key, value []byte
		var flags uint32
		var child uint64
		if isLeaf {
			flags = le.Uint32(e[0:])
			pos, ksize, vsize := uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
			start := uint64(eoff) + pos
			if start+ksize+vsize > uint64(len(p)) {
				c.errorf("%s: element %d (pos %d, ksize %d, vsize %d) outside the page", where, i, pos, ksize, vsize)
				return
			}
			key, value = p[start:start+ksize], p[start+ksize:start+ksize+vsize]
			if flags&^bucketLeafFlag != 0 {
				c.errorf("%s: element %d has unknown flags %#x", where, i, flags)
			}
		} else {
			pos, ksize := uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:]))
			child = le.Uint64(e[8:])
			start := uint64(eoff) + pos
			if start+ksize > uint64(len(p)) {
				c.errorf("%s: element %d (pos %d, ksize %d) outside the page", where, i, pos, ksize)
				return
			}
			key = p[start : start+ksize]
		}
		if len(key) == 0 {
			c.errorf("%s: element %d has an empty key", where, i)
		}
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			c.errorf("%s: key %d %x not above the previous key %x", where, i, key, prev)
		}
		if lo != nil && bytes.Compare(key, lo) < 0 {
			c.errorf("%s: key %d %x below the parent's key %x", where, i, key, lo)
		}
		if hi != nil && bytes.Compare(key, hi) >= 0 {
			c.errorf("%s: key %d %x not below the parent's next key %x", where, i, key, hi)
		}
		prev = key
		if isLeaf {
			if flags&bucketLeafFlag != 0 {
				c.checkBucketValue(fmt.Sprintf("%s key %x", where, key), value, depth)
			}
			continue
		}
		// Branch: the child holds keys in [key, next key).
		var next []byte
		if i+1 < int(h.count) {
			ne := p[eoff+elemSize:]
			npos, nks := uint64(le.Uint32(ne[0:])), uint64(le.Uint32(ne[4:]))
			ns := uint64(eoff+elemSize) + npos
			if ns+nks <= uint64(len(p)) {
				next = p[ns : ns+nks]
			}
		}
		if next == nil {
			next = hi
		}
		c.checkPage(child, key, next, depth+1, false)
	}
}

func (c *checker) checkBucketValue(where string, value []byte, depth int) {
	if len(value) < bucketHeaderSize {
		c.errorf("%s: bucket value of %d bytes", where, len(value))
		return
	}
	root := binary.LittleEndian.Uint64(value)
	if root == 0 {
		if len(value) < bucketHeaderSize+pageHeaderSize {
			c.errorf("%s: inline bucket value of %d bytes", where, len(value))
			return
		}
		c.checkNode(where+" (inline)", value[bucketHeaderSize:], nil, nil, depth+1, true)
		return
	}
	c.checkPage(root, nil, nil, depth+1, true)
}

func (c *checker) checkPage(id uint64, lo, hi []byte, depth int, isRoot bool) {
	where := fmt.Sprintf("page %d", id)
	hwm := c.r.meta.pgid
	if id < 2 || id >= hwm {
		c.errorf("%s: outside 2..%d (high water mark %d)", where, hwm-1, hwm)
		return
	}
	if prev, seen := c.visited[id]; seen {
		c.errorf("%s: referenced twice (already seen as %s)", where, prev)
		return
	}
	first := c.r.pageBytes(id, 1)
	if first == nil {
		c.errorf("%s: beyond the end of the file", where)
		return
	}
	h := readHdr(first)
	if h.id != id {
		c.errorf("%s: header says it is page %d", where, h.id)
		return
	}
	if id+uint64(h.overflow) >= hwm {
		c.errorf("%s: overflow %d beyond the high water mark %d", where, h.overflow, hwm)
		return
	}
	for i := uint64(0); i <= uint64(h.overflow); i++ {
		if prev, seen := c.visited[id+i]; seen {
			c.errorf("%s: overflow page %d already used by %s", where, id+i, prev)
			return
		}
	}
	for i := uint64(0); i <= uint64(h.overflow); i++ {
		c.visited[id+i] = where
	}
	p := c.r.pageBytes(id, uint64(h.overflow)+1)
	if p == nil {
		c.errorf("%s: overflow %d beyond the end of the file", where, h.overflow)
		return
	}
	c.checkNode(where, p, lo, hi, depth, isRoot)
}

// structuralCheck validates everything bbolt would dereference, without mmap,
// so that a damaged file yields messages and never a crash of tx.Check().
func structuralCheck(r *rawDB) []string {
	c := &checker{r: r, visited: map[uint64]string{0: "meta 0", 1: "meta 1"}}
	m := r.meta
	if m.pgid < 4 {
		c.errorf("meta: high water mark %d below 4", m.pgid)
	}
	if m.pgid > uint64(len(r.data))/uint64(r.pageSize) { // no m.pgid*pageSize: it may wrap
		c.errorf("meta: high water mark %d beyond the end of the file (%d pages of %d bytes)",
			m.pgid, len(r.data)/r.pageSize, r.pageSize)
	}
	for _, other := range r.metas {
		// bbolt takes the page size from meta 0 and never looks at meta 1's: a meta that
		// validates yet gives another one is not what bbolt writes.
		if other.err == "" && int(other.pageSize) != r.pageSize {
			c.errorf("meta %d: page size %d, the file's is %d", other.index, other.pageSize, r.pageSize)
		}
		// bbolt writes the meta of txid T to page T % 2.
		if other.err == "" && other.txid%2 != uint64(other.index) {
			c.errorf("meta %d: txid %d belongs in meta page %d", other.index, other.txid, other.txid%2)
		}
	}
	if m.root == 0 || m.root >= m.pgid {
		c.errorf("meta: root page %d outside 2..%d", m.root, m.pgid-1)
	}
	ids, err := r.freelistIDs()
	if err != nil {
		c.errorf("freelist: %v", err)
	} else if m.freelist != pgidNoFreelist {
		h := readHdr(r.pageBytes(m.freelist, 1))
		for i := uint64(0); i <= uint64(h.overflow); i++ {
			c.visited[m.freelist+i] = "freelist"
		}
	}
	for _, id := range ids {
		if id < 2 || id >= m.pgid {
			c.errorf("freelist: free page %d outside 2..%d", id, m.pgid-1)
		}
	}
	if len(c.errs) > 0 {
		return c.errs
	}
	c.checkPage(m.root, nil, nil, 0, true)
	return c.errs
}

func cmdCheck(args []string) (int, error) {
	pos, err := parseArgs(args, 1, nil)
	if err != nil {
		return 0, err
	}
	errs, err := checkFile(pos[0])
	if err != nil {
		return 0, err
	}
	for _, e := range errs {
		fmt.Println(e)
	}
	if len(errs) > 0 {
		return 1, nil
	}
	return 0, nil
}

// checkFile returns the structural walk's errors, or else bbolt's tx.Check() errors;
// an error only when the file cannot be read at all (not a finding).
func checkFile(path string) ([]string, error) {
	r, err := loadRaw(path)
	var perr *os.PathError
	if errors.As(err, &perr) {
		return nil, err
	} else if err != nil {
		return []string{err.Error()}, nil
	}
	if errs := structuralCheck(r); len(errs) > 0 {
		return errs, nil
	}
	db, err := openRO(path)
	if err != nil {
		return []string{fmt.Sprintf("open: %v", err)}, nil
	}
	defer db.Close()
	var errs []string
	err = db.View(func(tx *bolt.Tx) error {
		if uint64(tx.ID()) != r.meta.txid {
			errs = append(errs, fmt.Sprintf("bbolt uses txid %d, expected %d", tx.ID(), r.meta.txid))
		}
		for e := range tx.Check() {
			errs = append(errs, e.Error())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// ---------------------------------------------------------------- dump

type dumpBucket struct {
	Seq     uint64                 `json:"seq"`
	Keys    map[string]string      `json:"keys"`
	Buckets map[string]*dumpBucket `json:"buckets"`
}

func dumpOf(b *bolt.Bucket) *dumpBucket {
	d := &dumpBucket{Seq: b.Sequence(), Keys: map[string]string{}, Buckets: map[string]*dumpBucket{}}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			child := b.Bucket(k)
			if child == nil {
				panic(fmt.Sprintf("key %x has a nil value but is no bucket", k))
			}
			d.Buckets[hex.EncodeToString(k)] = dumpOf(child)
		} else {
			d.Keys[hex.EncodeToString(k)] = hex.EncodeToString(v)
		}
	}
	return d
}

func cmdDump(args []string) error {
	pos, err := parseArgs(args, 1, nil)
	if err != nil {
		return err
	}
	out, err := dumpFile(pos[0])
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// dumpFile returns {"buckets": {...}}, plus "keys" if the root bucket holds plain keys
// (bbolt's API never writes one there, a damaged file may).
func dumpFile(path string) (map[string]interface{}, error) {
	db, err := openRO(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	buckets := map[string]*dumpBucket{}
	keys := map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		c := tx.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil {
				keys[hex.EncodeToString(k)] = hex.EncodeToString(v)
				continue
			}
			buckets[hex.EncodeToString(k)] = dumpOf(tx.Bucket(k))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{"buckets": buckets}
	if len(keys) > 0 {
		out["keys"] = keys
	}
	return out, nil
}

// ---------------------------------------------------------------- serve

type serveAnswer struct {
	Errors []string    `json:"errors"`
	Dump   interface{} `json:"dump"`
	Fail   string      `json:"fail,omitempty"`
}

func cmdServe(args []string) error {
	if _, err := parseArgs(args, 0, nil); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		cmd, path, _ := strings.Cut(in.Text(), " ")
		if err := enc.Encode(serveOne(cmd, path)); err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return in.Err()
}

func serveOne(cmd, path string) (answer serveAnswer) {
	defer func() {
		if r := recover(); r != nil {
			answer = serveAnswer{Fail: fmt.Sprintf("panic: %v", r)}
		}
	}()
	if cmd == "dump" {
		d, err := dumpFile(path)
		if err != nil {
			return serveAnswer{Fail: err.Error()}
		}
		return serveAnswer{Errors: []string{}, Dump: d}
	}
	if cmd != "check" && cmd != "checkdump" {
		return serveAnswer{Fail: "unknown request " + strconv.Quote(cmd)}
	}
	errs, err := checkFile(path)
	if err != nil {
		return serveAnswer{Fail: err.Error()}
	}
	answer.Errors = append([]string{}, errs...)
	if cmd == "checkdump" && len(errs) == 0 {
		d, err := dumpFile(path)
		if err != nil {
			return serveAnswer{Fail: "dump: " + err.Error()}
		}
		answer.Dump = d
	}
	return answer
}

// ---------------------------------------------------------------- info

func cmdInfo(args []string) error {
	pos, err := parseArgs(args, 1, nil)
	if err != nil {
		return err
	}
	r, err := loadRaw(pos[0])
	if err != nil {
		return err
	}
	ids, err := r.freelistIDs()
	if err != nil {
		return err
	}
	db, err := openRO(pos[0])
	if err != nil {
		return err
	}
	defer db.Close()
	var txid int
	var size int64
	_ = db.View(func(tx *bolt.Tx) error {
		txid, size = tx.ID(), tx.Size()
		return nil
	})
	if uint64(txid) != r.meta.txid || uint64(size) != r.meta.pgid*uint64(r.pageSize) {
		return fmt.Errorf("bbolt sees txid %d size %d, the file says txid %d hwm %d", txid, size, r.meta.txid, r.meta.pgid)
	}
	freelist := interface{}(r.meta.freelist)
	if r.meta.freelist == pgidNoFreelist {
		freelist = nil
	}
	other := r.metas[1-r.meta.index]
	out := map[string]interface{}{
		"page_size":       r.pageSize,
		"txid":            r.meta.txid,
		"high_water_mark": r.meta.pgid,
		"freelist_pgid":   freelist,
		"free_pages":      len(ids),
		"root_pgid":       r.meta.root,
		"root_sequence":   r.meta.sequence,
		"meta_page":       r.meta.index,
		"other_meta_txid": other.txid,
		"other_meta_err":  other.err,
		"file_size":       len(r.data),
		"db_page_size":    db.Info().PageSize,
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// ---------------------------------------------------------------- stats

func cmdStats(args []string) error {
	pos, err := parseArgs(args, 1, nil)
	if err != nil {
		return err
	}
	db, err := openRO(pos[0])
	if err != nil {
		return err
	}
	defer db.Close()
	per := map[string]bolt.BucketStats{}
	var total bolt.BucketStats
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if b == nil {
				return fmt.Errorf("the root bucket holds a plain key %x", name)
			}
			st := b.Stats()
			per[hex.EncodeToString(name)] = st
			total.Add(st)
			return nil
		})
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"buckets": per, "total": total})
}

// ---------------------------------------------------------------- apply

type op struct {
	Op     string          `json:"op"`
	Bucket []string        `json:"bucket"`
	Key    string          `json:"key"`
	Name   string          `json:"name"`
	Value  json.RawMessage `json:"value"`
}

type opsFile struct {
	Txs [][]op `json:"txs"`
}

func unhex(what, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: bad hex %q: %v", what, s, err)
	}
	return b, nil
}

func applyOp(tx *bolt.Tx, o op) error {
	var b *bolt.Bucket
	for i, hname := range o.Bucket {
		name, err := unhex("bucket", hname)
		if err != nil {
			return err
		}
		if i == 0 {
			b = tx.Bucket(name)
		} else {
			b = b.Bucket(name)
		}
		if b == nil {
			return fmt.Errorf("bucket path %v: %x not found", o.Bucket, name)
		}
	}
	needBucket := func() error {
		if b == nil {
			return fmt.Errorf("%s needs a bucket path", o.Op)
		}
		return nil
	}
	switch o.Op {
	case "put":
		if err := needBucket(); err != nil {
			return err
		}
		key, err := unhex("key", o.Key)
		if err != nil {
			return err
		}
		var hv string
		if err := json.Unmarshal(o.Value, &hv); err != nil {
			return fmt.Errorf("put: value must be a hex string: %v", err)
		}
		value, err := unhex("value", hv)
		if err != nil {
			return err
		}
		return b.Put(key, value)
	case "delete":
		if err := needBucket(); err != nil {
			return err
		}
		key, err := unhex("key", o.Key)
		if err != nil {
			return err
		}
		return b.Delete(key)
	case "create_bucket":
		name, err := unhex("name", o.Name)
		if err != nil {
			return err
		}
		if b == nil {
			_, err = tx.CreateBucket(name)
		} else {
			_, err = b.CreateBucket(name)
		}
		return err
	case "delete_bucket":
		name, err := unhex("name", o.Name)
		if err != nil {
			return err
		}
		if b == nil {
			return tx.DeleteBucket(name)
		}
		return b.DeleteBucket(name)
	case "set_sequence":
		if err := needBucket(); err != nil {
			return err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(o.Value)), 10, 64)
		if err != nil {
			return fmt.Errorf("set_sequence: value must be an unsigned integer: %v", err)
		}
		return b.SetSequence(n)
	}
	return fmt.Errorf("unknown op %q", o.Op)
}

func cmdApply(args []string) error {
	var pageSize string
	pos, err := parseArgs(args, 2, map[string]*string{"page-size": &pageSize})
	if err != nil {
		return err
	}
	ps, err := atoi("page-size", pageSize, 0)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(pos[1])
	if err != nil {
		return err
	}
	var ops opsFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ops); err != nil {
		return fmt.Errorf("ops file %s: %v", pos[1], err)
	}
	db, err := bolt.Open(pos[0], 0o600, &bolt.Options{Timeout: 5 * time.Second, PageSize: ps})
	if err != nil {
		return err
	}
	for i, txOps := range ops.Txs {
		err := db.Update(func(tx *bolt.Tx) error {
			for j, o := range txOps {
				if err := applyOp(tx, o); err != nil {
					return fmt.Errorf("tx %d op %d (%s): %w", i, j, o.Op, err)
				}
			}
			return nil
		})
		if err != nil {
			_ = db.Close()
			return err
		}
	}
	return db.Close()
}

// ---------------------------------------------------------------- hold

func cmdHold(args []string) error {
	var seconds, readonly string
	pos, err := parseArgs(args, 1, map[string]*string{"seconds": &seconds, "readonly": &readonly})
	if err != nil {
		return err
	}
	n, err := atoi("seconds", seconds, 3600)
	if err != nil {
		return err
	}
	var db *bolt.DB
	if readonly != "" && readonly != "0" {
		db, err = openRO(pos[0])
	} else {
		db, err = bolt.Open(pos[0], 0o600, &bolt.Options{Timeout: 5 * time.Second})
	}
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Println("locked")
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := os.Stdin.Read(buf); err != nil {
				close(done)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Duration(n) * time.Second):
	}
	return db.Close()
}

// ---------------------------------------------------------------- ipam

var (
	idsKey    = []byte("ids")
	lastIPKey = []byte("lastIP")
)

func containerID(index int) string {
	sum := sha256.Sum256([]byte("ipamguard-test-container-" + strconv.Itoa(index)))
	return hex.EncodeToString(sum[:])
}

func normalizeIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

func nextIP(ip net.IP) net.IP {
	out := make(net.IP, len(ip))
	copy(out, ip)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
}

func cmdIpamGen(args []string) error {
	var network, subnet, count, perTx, first string
	pos, err := parseArgs(args, 1, map[string]*string{
		"network": &network, "subnet": &subnet, "count": &count, "ids-per-tx": &perTx, "first-index": &first,
	})
	if err != nil {
		return err
	}
	if network == "" || subnet == "" || count == "" {
		return usageError{"--network, --subnet and --count are required"}
	}
	n, err := atoi("count", count, 0)
	if err != nil {
		return err
	}
	k, err := atoi("ids-per-tx", perTx, 1000)
	if err != nil {
		return err
	}
	firstIndex, err := atoi("first-index", first, 0)
	if err != nil {
		return err
	}
	if k < 1 {
		return usageError{"--ids-per-tx must be at least 1"}
	}
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		return err
	}
	ipnet.IP = normalizeIP(ipnet.IP)
	gateway := nextIP(ipnet.IP)
	db, err := bolt.Open(pos[0], 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	done := 0
	for done < n {
		err := db.Update(func(tx *bolt.Tx) error {
			netBkt, err := tx.CreateBucketIfNotExists([]byte(network))
			if err != nil {
				return err
			}
			for i := 0; i < k && done < n; i++ {
				// One allocation, in the order of netavark's allocIPs.
				subnetBkt, err := netBkt.CreateBucketIfNotExists([]byte(ipnet.String()))
				if err != nil {
					return err
				}
				var ip net.IP
				if last := subnetBkt.Get(lastIPKey); last == nil {
					ip = nextIP(ipnet.IP)
				} else {
					ip = nextIP(net.IP(last))
				}
				for bytes.Equal(ip, gateway) || subnetBkt.Get(ip) != nil {
					ip = nextIP(ip)
				}
				if !ipnet.Contains(ip) || (len(ip) == 4 && !ipnet.Contains(nextIP(ip))) {
					return fmt.Errorf("subnet %s is full after %d allocations", ipnet, done)
				}
				if err := subnetBkt.Put(lastIPKey, ip); err != nil {
					return err
				}
				id := containerID(firstIndex + done)
				if err := subnetBkt.Put(ip, []byte(id)); err != nil {
					return err
				}
				idsBkt, err := netBkt.CreateBucketIfNotExists(idsKey)
				if err != nil {
					return err
				}
				js, err := json.Marshal([]net.IP{ip})
				if err != nil {
					return err
				}
				if err := idsBkt.Put([]byte(id), js); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if n == 0 { // still create the network bucket
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists([]byte(network))
			return err
		}); err != nil {
			return err
		}
	}
	return db.Close()
}

type ipamAlloc struct {
	IP          string `json:"ip"`
	ContainerID string `json:"container_id"`
}

type ipamSubnet struct {
	Subnet      string      `json:"subnet"`
	LastIP      *string     `json:"last_ip"`
	Allocations []ipamAlloc `json:"allocations"`
}

type ipamIDs struct {
	ContainerID string   `json:"container_id"`
	IPs         []string `json:"ips"`
}

type ipamNetwork struct {
	Name    string       `json:"name"`
	Subnets []ipamSubnet `json:"subnets"`
	IDs     []ipamIDs    `json:"ids"`
}

func cmdIpamDump(args []string) error {
	pos, err := parseArgs(args, 1, nil)
	if err != nil {
		return err
	}
	db, err := openRO(pos[0])
	if err != nil {
		return err
	}
	defer db.Close()
	networks := []ipamNetwork{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, netBkt *bolt.Bucket) error {
			nw := ipamNetwork{Name: string(name), Subnets: []ipamSubnet{}, IDs: []ipamIDs{}}
			c := netBkt.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if v != nil {
					continue
				}
				b := netBkt.Bucket(k)
				if bytes.Equal(k, idsKey) {
					err := b.ForEach(func(id, js []byte) error {
						var ips []string
						if err := json.Unmarshal(js, &ips); err != nil {
							return fmt.Errorf("network %s: ids[%s]: %v", name, id, err)
						}
						nw.IDs = append(nw.IDs, ipamIDs{ContainerID: string(id), IPs: ips})
						return nil
					})
					if err != nil {
						return err
					}
					continue
				}
				sn := ipamSubnet{Subnet: string(k), Allocations: []ipamAlloc{}}
				_ = b.ForEach(func(ip, id []byte) error {
					if bytes.Equal(ip, lastIPKey) {
						s := net.IP(id).String()
						sn.LastIP = &s
					} else if id != nil {
						sn.Allocations = append(sn.Allocations, ipamAlloc{net.IP(ip).String(), string(id)})
					}
					return nil
				})
				nw.Subnets = append(nw.Subnets, sn)
			}
			networks = append(networks, nw)
			return nil
		})
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"networks": networks})
}

func cmdIpamRelease(args []string) error {
	pos, err := parseArgs(args, 2, nil)
	if err != nil {
		return err
	}
	if _, err := os.Stat(pos[0]); err != nil {
		return err
	}
	id := []byte(pos[1])
	removed := 0
	start := time.Now()
	db, err := bolt.Open(pos[0], 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, netBkt *bolt.Bucket) error {
			idBkt := netBkt.Bucket(idsKey)
			if idBkt == nil {
				return nil
			}
			js := idBkt.Get(id)
			if js == nil {
				return nil
			}
			var ips []net.IP
			if err := json.Unmarshal(js, &ips); err != nil {
				return fmt.Errorf("network %s: ids[%s]: %v", name, id, err)
			}
			for _, ip := range ips {
				ip = normalizeIP(ip)
				c := netBkt.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					if v != nil || bytes.Equal(k, idsKey) {
						continue
					}
					_, sn, err := net.ParseCIDR(string(k))
					if err != nil || !sn.Contains(ip) {
						continue
					}
					snBkt := netBkt.Bucket(k)
					if snBkt.Get(ip) != nil {
						removed++
					}
					if err := snBkt.Delete(ip); err != nil {
						return err
					}
					break
				}
			}
			return idBkt.Delete(id)
		})
	})
	cerr := db.Close()
	held := time.Since(start)
	if err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	fmt.Println(removed)
	fmt.Fprintf(os.Stderr, "held_us=%d\n", held.Microseconds())
	return nil
}
