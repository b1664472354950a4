# opsconsole:read-host
# One call per host per refresh: the host's identity and state, then its VMs.
$os = Get-CimInstance Win32_OperatingSystem
$cv = Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
# Servicing and Windows Update each leave a key while a reboot is owed.
$cbs = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
$wu = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
$pending = (Test-Path $cbs) -or (Test-Path $wu)
Out-Json ([ordered]@{
    host = [ordered]@{
        computer_name = $env:COMPUTERNAME
        os_build = "$($os.BuildNumber).$($cv.UBR)"
        uptime_s = [int64]((Get-Date) - $os.LastBootUpTime).TotalSeconds
        boot_epoch = Boot-Epoch
        pending_reboot = [bool]$pending
    }
    vms = @(Get-VM | ForEach-Object { VM-Json $_ })
})
