# opsconsole:stage-updates
# First half of installing updates. The Windows Update API refuses remote
# (WinRM) sessions, so the work runs as a scheduled task under SYSTEM. This
# writes the task's script and clears the last report; install-updates.ps1
# then registers and starts the task, update-status.ps1 reports on it.
$dir = Join-Path $env:ProgramData 'opsconsole'
$t = Get-ScheduledTask -TaskName 'opsconsole-updates' -ErrorAction SilentlyContinue
if ($t -and "$($t.State)" -eq 'Running') { Fail 'the opsconsole-updates task is already running' }
$null = New-Item -ItemType Directory -Force -Path $dir
Remove-Item -Force -ErrorAction SilentlyContinue (Join-Path $dir 'update-report.json')
# The task's own code, kept as a scriptblock so it stays readable here.
# With -Script it runs the operator's maintenance script instead of Windows Update.
$task = {
param([string]$Script = '')
$ErrorActionPreference = 'Stop'
try {
    if ($Script) {
        & $Script *>&1 | Out-File -Encoding UTF8 (Join-Path $PSScriptRoot 'update-task.log')
        $code = if ($null -ne $LASTEXITCODE) { [int]$LASTEXITCODE } else { 0 }
        $res = @{ ok = ($code -eq 0); exit_code = $code; script = $Script }
    } else {
        $s = New-Object -ComObject Microsoft.Update.Session
        $found = $s.CreateUpdateSearcher().Search("IsInstalled=0 and IsHidden=0 and Type='Software'").Updates
        $todo = New-Object -ComObject Microsoft.Update.UpdateColl
        foreach ($u in $found) { if (-not $u.EulaAccepted) { $u.AcceptEula() }; [void]$todo.Add($u) }
        $code = 2; $reboot = $false
        if ($todo.Count) {
            $d = $s.CreateUpdateDownloader(); $d.Updates = $todo; [void]$d.Download()
            $i = $s.CreateUpdateInstaller(); $i.Updates = $todo; $r = $i.Install()
            $code = [int]$r.ResultCode; $reboot = [bool]$r.RebootRequired
        }
        # ResultCode 2 = succeeded, 3 = succeeded with errors.
        $res = @{
            ok = ($code -in 2, 3)
            result_code = $code
            installed = $todo.Count
            reboot_required = $reboot
            titles = @($todo | ForEach-Object { $_.Title })
        }
    }
} catch { $res = @{ ok = $false; error = "$_" } }
ConvertTo-Json -InputObject $res -Compress | Set-Content -Encoding UTF8 -Path (Join-Path $PSScriptRoot 'update-report.json')
}
Set-Content -Encoding UTF8 -Path (Join-Path $dir 'update-task.ps1') -Value $task.ToString()
Out-Json ([ordered]@{ staged = $true })
