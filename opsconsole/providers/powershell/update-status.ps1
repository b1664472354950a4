# opsconsole:update-status
# The update task's state, and its report once it has written one.
$t = Get-ScheduledTask -TaskName 'opsconsole-updates' -ErrorAction SilentlyContinue
if (-not $t) { Fail 'no opsconsole-updates task on this host' }
$f = Join-Path $env:ProgramData 'opsconsole\update-report.json'
$r = if (Test-Path $f) { Get-Content -Raw $f } else { '' }
Out-Json ([ordered]@{
    task_state = "$($t.State)"
    last_result = [int64]($t | Get-ScheduledTaskInfo).LastTaskResult
    report = "$r"
})
