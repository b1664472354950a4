# opsconsole:get-vm
# One VM's state, polled while it shuts down or starts.
Out-Json (VM-Json (Find-VM $Name))
