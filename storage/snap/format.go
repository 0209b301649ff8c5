package snap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// Limits. They bound what a reader will allocate for a file it has not yet
// verified, and what a receiver will accept from a peer.
const (
	// MetadataBytesMax bounds the encoded metadata section (index, term,
	// voters, protocol blob).
	MetadataBytesMax = 1 << 20
	// VotersMax bounds the number of voters in Meta.Voters.
	VotersMax = 4096
	// ProtocolBytesMax bounds Meta.Protocol. Together with VotersMax it
	// keeps the metadata section within MetadataBytesMax.
	ProtocolBytesMax = MetadataBytesMax - metaFixedBytes - 8*VotersMax
	// ChunkBytesMax bounds one chunk of a chunked transfer.
	ChunkBytesMax = 1 << 20
	// DefaultSizeBytesMax is the default bound on a whole snapshot file
	// (Options.SizeBytesMax).
	DefaultSizeBytesMax = 64 << 30
	// DefaultKeep is the default number of snapshots GC keeps.
	DefaultKeep = 2
)

// Version is the file format version this package writes and reads.
const Version = 1

const (
	magic          = "SYNODSNP"
	endMagic       = "SNPE"
	headerBytes    = 16            // magic, version, metaLen
	metaFixedBytes = 8 + 8 + 4 + 4 // index, term, nVoters, protoLen
	crcBytes       = 4             // metaCRC, after the metadata
	trailerBytes   = 16            // dataLen, fileCRC, end magic
	// minFileBytes is the size of a snapshot with empty metadata lists
	// and no data.
	minFileBytes = headerBytes + metaFixedBytes + crcBytes + trailerBytes
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrNoSnapshot is returned by LoadNewest when the directory holds no
	// valid snapshot.
	ErrNoSnapshot = errors.New("snap: no valid snapshot")
	// ErrCorrupt is wrapped by every error that reports a damaged snapshot:
	// bad magic, bad checksum, truncation, malformed metadata.
	ErrCorrupt = errors.New("snap: snapshot corrupt")
	// ErrUnsupportedVersion is wrapped when a file was written in a format
	// version this build cannot read.
	ErrUnsupportedVersion = errors.New("snap: unsupported snapshot format version")
	// ErrInvalidMeta is wrapped when Meta given to Create or Save breaks
	// its contract (see Meta).
	ErrInvalidMeta = errors.New("snap: invalid snapshot metadata")
	// ErrTooLarge is wrapped when a snapshot would exceed
	// Options.SizeBytesMax.
	ErrTooLarge = errors.New("snap: snapshot too large")
	// ErrChunkOutOfOrder is wrapped when a Receiver gets a chunk that does
	// not start where the previous one ended (a duplicate or a gap).
	ErrChunkOutOfOrder = errors.New("snap: chunk out of order")
	// ErrChunkTooLarge is wrapped when a chunk exceeds ChunkBytesMax.
	ErrChunkTooLarge = errors.New("snap: chunk too large")
	// ErrClosed is returned when a Writer, Reader, Source or Receiver is
	// used after it was committed, closed or aborted.
	ErrClosed = errors.New("snap: already closed")
)

// Meta is a snapshot's protocol metadata.
//
// Contract (checked by Create, Save, and again when a file is read):
// len(Voters) ≤ VotersMax; every voter is non-zero and appears once;
// len(Protocol) ≤ ProtocolBytesMax. Voters keep the order given.
type Meta struct {
	// Index is the index of the last entry the snapshot includes.
	Index uint64
	// Term is that entry's term (zero for protocols without terms).
	Term uint64
	// Voters is the membership as of Index.
	Voters []consensus.NodeID
	// Protocol is opaque protocol-specific metadata.
	Protocol []byte
}

// validate checks m's contract.
func (m *Meta) validate() error {
	if len(m.Voters) > VotersMax {
		return fmt.Errorf("%w: %d voters, at most %d (VotersMax) are allowed", ErrInvalidMeta, len(m.Voters), VotersMax)
	}
	if len(m.Protocol) > ProtocolBytesMax {
		return fmt.Errorf("%w: protocol metadata is %d bytes, at most %d (ProtocolBytesMax) are allowed; keep bulk state in the data stream", ErrInvalidMeta, len(m.Protocol), ProtocolBytesMax)
	}
	sorted := slices.Clone(m.Voters)
	slices.Sort(sorted)
	for i, id := range sorted {
		if id == consensus.None {
			return fmt.Errorf("%w: voter ID 0 is not a valid node ID", ErrInvalidMeta)
		}
		if i > 0 && sorted[i-1] == id {
			return fmt.Errorf("%w: voter %d appears more than once", ErrInvalidMeta, id)
		}
	}
	return nil
}

func (m *Meta) metaBytes() int { return metaFixedBytes + 8*len(m.Voters) + len(m.Protocol) }

// encodeHeader returns the header, metadata and metaCRC: the file's first
// bytes, up to where the data begins. m must be valid.
func encodeHeader(m *Meta) []byte {
	n := m.metaBytes()
	b := make([]byte, 0, headerBytes+n+crcBytes)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint64(b, m.Index)
	b = binary.LittleEndian.AppendUint64(b, m.Term)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Voters)))
	for _, id := range m.Voters {
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Protocol)))
	b = append(b, m.Protocol...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// prefixLen reads the fixed header at the start of b and returns the length
// of the whole prefix (header, metadata, metaCRC). It checks magic, version
// and the metadata bound, so a caller may safely allocate the result.
func prefixLen(b []byte) (int, error) {
	if len(b) < headerBytes {
		return 0, fmt.Errorf("%w: truncated header (%d of %d bytes)", ErrCorrupt, len(b), headerBytes)
	}
	if string(b[:8]) != magic {
		return 0, fmt.Errorf("%w: bad magic %q, not a synod snapshot file", ErrCorrupt, b[:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return 0, fmt.Errorf("%w: file has version %d, this build reads version %d; open it with a synod build that supports it", ErrUnsupportedVersion, v, Version)
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if n > MetadataBytesMax {
		return 0, fmt.Errorf("%w: metadata length %d exceeds MetadataBytesMax (%d)", ErrCorrupt, n, MetadataBytesMax)
	}
	if n < metaFixedBytes {
		return 0, fmt.Errorf("%w: metadata length %d is below the minimum %d", ErrCorrupt, n, metaFixedBytes)
	}
	return headerBytes + int(n) + crcBytes, nil
}

// decodeHeader decodes the prefix of a snapshot file: header, metadata and
// metaCRC. It returns the metadata and the prefix length (where the data
// begins). It never panics, whatever b holds.
func decodeHeader(b []byte) (Meta, int, error) {
	n, err := prefixLen(b)
	if err != nil {
		return Meta{}, 0, err
	}
	if len(b) < n {
		return Meta{}, 0, fmt.Errorf("%w: truncated metadata (%d of %d bytes)", ErrCorrupt, len(b), n)
	}
	want := binary.LittleEndian.Uint32(b[n-crcBytes:])
	if got := crc32.Checksum(b[:n-crcBytes], castagnoli); got != want {
		return Meta{}, 0, fmt.Errorf("%w: header/metadata checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, want, got)
	}
	m, err := decodeMeta(b[headerBytes : n-crcBytes])
	if err != nil {
		return Meta{}, 0, err
	}
	return m, n, nil
}

// decodeMeta parses a metadata section that must fill b exactly, and checks
// the Meta contract. It never panics, whatever b holds.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < metaFixedBytes {
		return Meta{}, fmt.Errorf("%w: metadata is %d bytes, below the minimum %d", ErrCorrupt, len(b), metaFixedBytes)
	}
	m.Index = binary.LittleEndian.Uint64(b)
	m.Term = binary.LittleEndian.Uint64(b[8:])
	nv := binary.LittleEndian.Uint32(b[16:])
	b = b[20:]
	if nv > VotersMax || uint64(nv)*8+4 > uint64(len(b)) {
		return Meta{}, fmt.Errorf("%w: metadata claims %d voters, which do not fit", ErrCorrupt, nv)
	}
	if nv > 0 {
		m.Voters = make([]consensus.NodeID, nv)
		for i := range m.Voters {
			m.Voters[i] = consensus.NodeID(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
	b = b[8*nv:]
	np := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(np) != uint64(len(b)) {
		return Meta{}, fmt.Errorf("%w: metadata claims a %d-byte protocol blob, %d bytes remain", ErrCorrupt, np, len(b))
	}
	if np > 0 {
		m.Protocol = slices.Clone(b)
	}
	if err := m.validate(); err != nil {
		return Meta{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return m, nil
}

// encodeTrailer returns the trailer for dataLen bytes of data, given the
// CRC-32C of everything before it.
func encodeTrailer(crc uint32, dataLen int64) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, trailerBytes), uint64(dataLen))
	crc = crc32.Update(crc, castagnoli, b)
	b = binary.LittleEndian.AppendUint32(b, crc)
	return append(b, endMagic...)
}

// decodeTrailer checks the trailer's end magic and that its data length
// matches the file's size, and returns the data length and the stored
// fileCRC.
func decodeTrailer(t []byte, fileBytes int64, prefix int) (int64, uint32, error) {
	if string(t[12:]) != endMagic {
		return 0, 0, fmt.Errorf("%w: bad end magic %q: the file is truncated or was not completely written", ErrCorrupt, t[12:])
	}
	dataLen := binary.LittleEndian.Uint64(t)
	if want := fileBytes - int64(prefix) - trailerBytes; dataLen != uint64(want) {
		return 0, 0, fmt.Errorf("%w: trailer records %d data bytes but the file holds %d: truncated or extended", ErrCorrupt, dataLen, want)
	}
	return int64(dataLen), binary.LittleEndian.Uint32(t[8:]), nil
}
