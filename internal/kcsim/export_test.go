package kcsim

import "time"

// FormAction exports formAction to the external tests in kcsim_test.go,
// which live outside the package so they can use kcsimtest.
var FormAction = formAction

// MsgInvalidUser exports msgInvalidUser to the external tests.
var MsgInvalidUser = msgInvalidUser

// NewUUID exports newUUID to the external tests.
var NewUUID = newUUID

// IsUUID exports isUUID to the external tests.
var IsUUID = isUUID

// FailingSinceLayout exports failingSinceLayout to the external tests.
var FailingSinceLayout = failingSinceLayout

// SetFailingSince sets the "Failing since" time a down database reports.
func (n *Node) SetFailingSince(t time.Time) { n.failingSince.Store(t.UnixNano()) }
