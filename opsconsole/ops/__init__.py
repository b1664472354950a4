"""Operations: every change to the cluster goes through here.

`actions` holds each mutating call (checked for read-only, audited), the
`engine` runs plans of steps with pause/abort and a journal, `guards` say
whether a plan is safe, `plans` build the operations the console offers.
"""
