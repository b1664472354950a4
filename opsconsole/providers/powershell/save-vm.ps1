# opsconsole:save-vm
$vm = Find-VM $Name
if ("$($vm.State)" -eq 'Running') { Save-VM -VM $vm }
Out-Json (VM-Json (Get-VM -Id $vm.Id))
