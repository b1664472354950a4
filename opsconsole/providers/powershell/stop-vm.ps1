# opsconsole:stop-vm
# Mode 'shutdown' asks the guest OS to shut down and returns at once: the
# console polls and decides what happens at its timeout. Stop-VM is not used
# for that: without integration services it would turn the VM off instead.
# Mode 'turnoff' pulls the plug; the console sends it only when confirmed.
$vm = Find-VM $Name
if ("$($vm.State)" -in 'Off', 'Saved') { Out-Json (VM-Json $vm); exit 0 }
if ($Mode -ceq 'turnoff') {
    Stop-VM -VM $vm -TurnOff -Force -Confirm:$false
} elseif ($Mode -ceq 'shutdown') {
    $sc = Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName Msvm_ShutdownComponent -Filter "SystemName='$($vm.Id)'"
    if (-not $sc) { Fail "VM '$Name' offers no guest shutdown (integration services off?)" }
    $r = Invoke-CimMethod -InputObject $sc -MethodName InitiateShutdown -Arguments @{ Force = $true; Reason = 'opsconsole maintenance' }
    if ($r.ReturnValue -notin 0, 4096) { Fail "guest refused to shut down VM '$Name' (code $($r.ReturnValue))" }
} else {
    Fail "unknown stop mode '$Mode'"
}
Out-Json (VM-Json (Get-VM -Id $vm.Id))
