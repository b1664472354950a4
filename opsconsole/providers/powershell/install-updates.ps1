# opsconsole:install-updates
# Second half (stage-updates.ps1 ran first): register the task under SYSTEM
# and start it. $Script is the operator's maintenance script on the host, or
# '' for Windows Update.
$worker = Join-Path $env:ProgramData 'opsconsole\update-task.ps1'
if (-not (Test-Path $worker)) { Fail 'the update task was not staged' }
# The path goes into the task's command line between double quotes.
if ($Script.Contains('"')) { Fail 'the maintenance script path contains a double quote' }
if ($Script -and -not (Test-Path -LiteralPath $Script)) { Fail "no maintenance script at $Script" }
$arg = "-NoProfile -NonInteractive -ExecutionPolicy Bypass -File `"$worker`""
if ($Script) { $arg += " -Script `"$Script`"" }
$action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument $arg
$who = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
$null = Register-ScheduledTask -TaskName 'opsconsole-updates' -Action $action -Principal $who -Force
Start-ScheduledTask -TaskName 'opsconsole-updates'
Out-Json ([ordered]@{ task = 'opsconsole-updates'; started = $true })
