#compdef mf

_mf_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _MF_COMPLETE=complete_zsh mf)
}

compdef _mf_completion mf
