// One vault, deployed into the vault's resource group: the handler's read
// access to key metadata, and the vault's Event Grid system topic. A source
// can have only one system topic, so an existing one is reused by name
// instead of creating a second (which fails at deployment, not in what-if).

@description('Name of the existing Key Vault, in this resource group.')
@minLength(3)
@maxLength(24)
param vaultName string

@description('Name of the vault\'s existing Event Grid system topic, or empty to create one. An existing topic must have a system-assigned identity (README "Deploy").')
param existingSystemTopicName string

@description('Resource group of the existing system topic (the vault\'s own by default; portal or policy may have put it elsewhere).')
@minLength(1)
param existingSystemTopicResourceGroup string

@description('Principal id of the handler identity.')
param principalId string

@description('Tags of a created system topic.')
param tags object

var keyVaultReader = '21090545-7ca7-4776-b22c-e363652d74d2'
var createTopic = empty(existingSystemTopicName)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// Key Vault Reader on the vault: read key versions and their attributes
// (enabled, nbf, exp, key type and size, operations). It grants no
// cryptographic operations, no key material and no writes: the handler
// never disables or deletes a version.
resource keyMetadataAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultReader)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The system-assigned identity dead-letters undeliverable events into the
// app's storage (dead-letter-access.bicep grants its role).
resource newTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = if (createTopic) {
  name: '${vaultName}-events'
  location: vault.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource existingTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = if (!createTopic) {
  name: existingSystemTopicName
  scope: resourceGroup(existingSystemTopicResourceGroup)
}

output systemTopicName string = createTopic ? newTopic.name : existingTopic.name
output systemTopicPrincipalId string = createTopic ? newTopic.identity.principalId : existingTopic.identity.principalId
