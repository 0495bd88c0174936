package sock

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the counters of the sockets added to it, labelled by
// listener (a configured address: bounded).
type Collector struct {
	received, kernelDrops, queueDrops, rcvbuf *prometheus.Desc

	mu    sync.Mutex
	socks []namedConn
}

type namedConn struct {
	name string
	c    *Conn
}

// NewCollector names its metrics pinhole_<subsystem>_udp_….
func NewCollector(subsystem string) *Collector {
	n := func(s string) string { return "pinhole_" + subsystem + "_udp_" + s }
	l := []string{"listener"}
	return &Collector{
		received:    prometheus.NewDesc(n("received_total"), "Datagrams received from the kernel.", l, nil),
		kernelDrops: prometheus.NewDesc(n("kernel_drops_total"), "Datagrams the kernel dropped on the socket (receive buffer full; SO_RXQ_OVFL, as of the last datagram received).", l, nil),
		queueDrops:  prometheus.NewDesc(n("queue_drops_total"), "Datagrams dropped because every parser was busy and the receive queue was full.", l, nil),
		rcvbuf:      prometheus.NewDesc(n("receive_buffer_bytes"), "SO_RCVBUF granted by the kernel.", l, nil),
	}
}

// Add exports c's counters under listener name.
func (col *Collector) Add(name string, c *Conn) {
	col.mu.Lock()
	defer col.mu.Unlock()
	col.socks = append(col.socks, namedConn{name, c})
}

// Describe implements prometheus.Collector.
func (col *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- col.received
	ch <- col.kernelDrops
	ch <- col.queueDrops
	ch <- col.rcvbuf
}

// Collect implements prometheus.Collector.
func (col *Collector) Collect(ch chan<- prometheus.Metric) {
	col.mu.Lock()
	socks := append([]namedConn(nil), col.socks...)
	col.mu.Unlock()
	for _, s := range socks {
		st := s.c.Stats()
		ch <- prometheus.MustNewConstMetric(col.received, prometheus.CounterValue, float64(st.Received), s.name)
		ch <- prometheus.MustNewConstMetric(col.kernelDrops, prometheus.CounterValue, float64(st.KernelDrops), s.name)
		ch <- prometheus.MustNewConstMetric(col.queueDrops, prometheus.CounterValue, float64(st.QueueDrops), s.name)
		ch <- prometheus.MustNewConstMetric(col.rcvbuf, prometheus.GaugeValue, float64(s.c.ReceiveBuffer()), s.name)
	}
}
