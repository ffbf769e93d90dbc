// Package topology knows which node serves which hash slot. The slot map is an immutable Snapshot, learnt
// from CLUSTER SLOTS and swapped atomically by the Manager; the request path reads it without locks.
package topology

import "bytes"

// NumSlots is the number of hash slots of a Redis Cluster.
const NumSlots = 16384

// Slot is Redis's keyHashSlot (cluster.c): CRC16-XMODEM of the key, or of its hash tag, modulo 16384. The
// tag is the bytes between the first '{' and the first '}' after it, when there is at least one byte between
// them; otherwise the whole key is hashed. The empty key is slot 0. Slot does not allocate.
func Slot(key []byte) uint16 {
	if i := bytes.IndexByte(key, '{'); i >= 0 {
		if j := bytes.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) & (NumSlots - 1)
}

// crc16 is CRC16-CCITT as XMODEM defines it (polynomial 0x1021, initial value 0, no reflection, no final
// XOR), computed four bytes at a time ("slicing by 4": the four table lookups do not depend on each other).
func crc16(b []byte) uint16 {
	var crc uint16
	for len(b) >= 4 {
		crc = crcTab[3][byte(crc>>8)^b[0]] ^ crcTab[2][byte(crc)^b[1]] ^ crcTab[1][b[2]] ^ crcTab[0][b[3]]
		b = b[4:]
	}
	for _, c := range b {
		crc = crc<<8 ^ crcTab[0][byte(crc>>8)^c]
	}
	return crc
}

// crcTab[0] is the classic byte table (src/crc16.c); crcTab[k][x] is the CRC of byte x followed by k zero
// bytes. CRC is linear over XOR, so a 4-byte step is the XOR of one lookup per byte.
var crcTab = func() (t [4][256]uint16) {
	for i := range t[0] {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[0][i] = crc
	}
	for k := 1; k < len(t); k++ {
		for i := range t[k] {
			prev := t[k-1][i]
			t[k][i] = prev<<8 ^ t[0][prev>>8]
		}
	}
	return t
}()
