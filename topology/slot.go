// Package topology knows which node serves which hash slot. The slot map is an immutable Snapshot, learnt
// from CLUSTER SLOTS and swapped atomically by the Manager; the request path reads it without locks.
package topology

// NumSlots is the number of hash slots of a Redis Cluster.
const NumSlots = 16384

// Slot is Redis's keyHashSlot: CRC16-XMODEM of the key, or of its hash tag (the bytes between the first '{'
// and the first '}' after it, when there is at least one), modulo 16384.
func Slot(key []byte) uint16 {
	for i, c := range key {
		if c == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					break
				}
			}
			break
		}
	}
	var crc uint16
	for _, b := range key {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^b]
	}
	return crc & (NumSlots - 1)
}

// crc16tab is CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()
