//go:build race

package reliability

// idleWait bounds lb.idle. Under the race detector a connection that sent
// 20000 reset streams (TestH2RapidReset) takes several times longer to
// wind down; that is the detector's cost, not a leak, so only the bound
// grows (issue 13, Habits: the test timed out after 5 s under -race).
const idleWait = 30e9
