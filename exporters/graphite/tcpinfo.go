package graphite

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// deliveryProbe tells, from the kernel's view of one TCP connection, whether everything
// written to it so far has reached the peer application.
//
// Graphite plaintext has no acknowledgement. The kernel knows two halves of one:
//   - SIOCOUTQ is the number of bytes in the send queue, not yet acknowledged by the
//     peer's TCP stack (sent or not). Zero means the peer's kernel has all of it.
//   - TCP_INFO's tcpi_snd_wnd is the window the peer last advertised. Bytes the peer's
//     kernel holds but its application has not read shrink that window; once the
//     application reads them the window goes back to its largest value. Window accounting
//     is coarse (a shrink smaller than the unread bytes was measured here), so only "back
//     at the largest value seen" is taken as proof.
//
// Both together at one instant — a quiet point — prove that every byte written before it
// was read by the peer: a crash of the peer after that cannot lose it from the socket.
// Counting bytes instead would break under TLS, whose records add bytes we do not see.
//
// The proof has one hole, measured here: early in a connection the peer's kernel grows its
// advertised window as data arrives whether or not its application reads (against a peer
// that never read, the window rose from 65,483 to 91,136 over the first 8 KB), so a few KB
// sent first can pass for read when they are not. The exporter closes that hole with its
// replay window: a connection that fails is followed by a resend of the last
// --graphite.replay-window of data, longer than the time it takes to notice a peer that
// stopped reading.
type deliveryProbe struct {
	raw    syscall.RawConn
	maxWnd uint32
}

func newDeliveryProbe(c net.Conn) (*deliveryProbe, error) {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil, errors.New("delivery probe needs a TCP connection")
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &deliveryProbe{raw: raw}, nil
}

// quiet reports whether everything written so far has been acknowledged and read, and
// whether the peer's kernel at least has all of it (the send queue is empty). edge is the
// right edge of the peer's window, in bytes acknowledged plus the window: it moves only
// when the peer takes bytes in and makes room for more, so a peer whose edge stands still
// is not reading.
func (p *deliveryProbe) quiet() (quiet, drained bool, edge uint64, err error) {
	var outq int
	var info *unix.TCPInfo
	cerr := p.raw.Control(func(fd uintptr) {
		// SIOCOUTQ first: if the queue is empty now, bytes acknowledged later than this
		// read cannot exist, so the window read next describes all of them.
		if outq, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err != nil {
			return
		}
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if cerr != nil {
		return false, false, 0, cerr
	}
	if err != nil {
		return false, false, 0, err
	}
	if info.Snd_wnd > p.maxWnd {
		p.maxWnd = info.Snd_wnd
	}
	return outq == 0 && info.Snd_wnd >= p.maxWnd, outq == 0, info.Bytes_acked + uint64(info.Snd_wnd), nil
}
