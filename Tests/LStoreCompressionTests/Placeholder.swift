// Tests arrive with the compression module.
