# opsconsole:start-vm
$vm = Find-VM $Name
if ("$($vm.State)" -ne 'Running') { Start-VM -VM $vm }
Out-Json (VM-Json (Get-VM -Id $vm.Id))
