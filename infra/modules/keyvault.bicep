// Destination secrets (SAS tokens, client secrets, connection strings). Azure RBAC, not access policies: the
// app's identity gets "Key Vault Secrets Officer" on this vault and nothing else.
param name string
param location string
param tags object

@description('Refuse the public endpoint: only the private endpoint (the virtual network) reaches the vault.')
param privateOnly bool

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_109: without vnetEnabled the Flex Consumption app reaches the vault over its public endpoint; only Entra ID identities with a Key Vault role get in (RBAC); vnetEnabled=true denies it
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: public network access is disabled with vnetEnabled=true
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Always on: destination credentials cannot be destroyed for 90 days (`azd down` leaves the vault soft-deleted).
    enablePurgeProtection: true
    publicNetworkAccess: privateOnly ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateOnly ? 'Deny' : 'Allow'
    }
  }
}

// GET /api/health/ready reads this secret to prove the vault answers the app's identity. Its value opens nothing.
resource readinessSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'readiness-probe'
  properties: {
    // checkov:skip=CKV_AZURE_41: a readiness marker, not a credential; an expiry date would only make the probe fail one day
    value: 'not a credential: read by GET /api/health/ready'
    contentType: 'text/plain'
    attributes: { enabled: true }
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
