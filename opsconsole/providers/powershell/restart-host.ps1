# opsconsole:restart-host
# Refuse while VMs run: they are shut down by the console, one by one, first.
$busy = @(Get-VM | Where-Object { "$($_.State)" -notin 'Off', 'Saved' } | ForEach-Object { $_.Name })
if ($busy.Count) { Fail "VMs still running: $($busy -join ', ')" }
$boot = Boot-Epoch
# A delayed restart lets this answer reach the console before WinRM stops.
& shutdown.exe /r /t 5 /d p:2:17 /c 'opsconsole: host maintenance restart'
if ($LASTEXITCODE) { Fail "shutdown.exe refused (exit $LASTEXITCODE); is a restart already pending?" }
Out-Json ([ordered]@{ boot_epoch = $boot; restart_in_s = 5 })
