package optcheck

import (
	"errors"
	"testing"
)

func TestProblems(t *testing.T) {
	var p Problems
	if p.Err() != nil || Split(nil) != nil {
		t.Fatal("no problems must be a nil error")
	}
	p.Add("Priority", "%d is out of range 1..255", 300)
	p.Add("VIPs[1]", "needs at least one virtual address")
	other := errors.New("plain")
	list := Split(errors.Join(p.Err(), other))
	if len(list) != 3 || list[2] != other {
		t.Fatalf("Split = %v", list)
	}
	var fe *FieldError
	if !errors.As(list[0], &fe) || fe.Field != "Priority" || fe.Msg != "300 is out of range 1..255" || fe.Error() != "Priority: 300 is out of range 1..255" {
		t.Errorf("first problem %#v", list[0])
	}
}
