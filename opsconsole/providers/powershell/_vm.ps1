# Helpers for the scripts that act on one VM or list them.
# Exact, case-sensitive match: Get-VM -Name would expand wildcards.
function Find-VM([string]$n) {
    $m = @(Get-VM | Where-Object { $_.Name -ceq $n })
    if ($m.Count -eq 0) { Fail "no VM named '$n' on $env:COMPUTERNAME" }
    if ($m.Count -gt 1) { Fail "$($m.Count) VMs are named '$n' on $env:COMPUTERNAME" }
    $m[0]
}

# Version-stable fields: state as text, seconds, bytes.
function VM-Json($v) {
    [ordered]@{
        name = $v.Name
        id = "$($v.Id)"
        state = "$($v.State)"
        uptime_s = [int64]$v.Uptime.TotalSeconds
        cpu_pct = [int]$v.CPUUsage
        memory_bytes = [int64]$v.MemoryAssigned
    }
}
