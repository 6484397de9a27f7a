// The app's one identity: the host reaches its storage with it, the app reaches control storage and Key Vault
// with it, and the host sends telemetry with it. User-assigned, so role assignments exist before the app starts.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
