package redis

import (
	"slices"
	"testing"
)

// TestClusterPrimaries: the primaries of a CLUSTER NODES reply, slot-less
// ones included; replicas, failed or suspected, handshaking and address-less
// nodes left out.
func TestClusterPrimaries(t *testing.T) {
	text := "" +
		"a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n" +
		"b2 127.0.0.1:30002@40002,host-b master - 0 1700000000000 2 connected 5461-10922 [5462->-c3]\n" +
		"c3 127.0.0.1:30003@40003 master - 0 1700000000000 7 connected\n" +
		"d4 127.0.0.1:30004@40004 slave a1 0 1700000000000 1 connected\n" +
		"e5 127.0.0.1:30005@40005 master,fail - 0 1700000000000 3 disconnected 10923-16383\n" +
		"f6 127.0.0.1:30006@40006 master,handshake - 0 0 0 connected\n" +
		"h8 127.0.0.1:30008@40008 master,fail? - 0 1700000000000 4 connected 16000\n" +
		"g7 :0@0 master,noaddr - 0 0 0 disconnected\n" +
		"short line\n"
	got := clusterPrimaries(text)
	want := []clusterNode{{"a1", "127.0.0.1:30001"}, {"b2", "127.0.0.1:30002"}, {"c3", "127.0.0.1:30003"}}
	if !slices.Equal(got, want) {
		t.Fatalf("clusterPrimaries = %v; want %v", got, want)
	}
}
